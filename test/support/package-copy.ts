import { cpSync, mkdirSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Copies what the built CLI and `broker dev` run (bin/, dist/, the oclif manifest,
 * wrangler.toml, worker/ and the src/protocol and src/cloud modules the Worker imports) into `dest`, with
 * node_modules linked. Tests run that copy: in a shared checkout others rebuild dist/ and edit
 * worker/ meanwhile, and wrangler dev restarts the Worker (dropping every WebSocket) on any edit.
 */
export function copyPackage(repoRoot: string, dest: string): string {
  mkdirSync(dest, { recursive: true })
  for (const entry of [
    'package.json',
    'wrangler.toml',
    'bin',
    'dist',
    'oclif.manifest.json',
    'worker',
    join('src', 'protocol'),
    join('src', 'cloud'),
  ]) {
    try {
      // Timestamps kept: bin/run.js compares them to choose between the bundle and tsc output.
      cpSync(join(repoRoot, entry), join(dest, entry), { recursive: true, preserveTimestamps: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || entry !== 'oclif.manifest.json') throw error
    }
  }
  symlinkSync(join(repoRoot, 'node_modules'), join(dest, 'node_modules'))
  return dest
}
