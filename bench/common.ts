import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { repoRoot } from '../test/support/cli.js'

/**
 * Start-up is part of what the CLI benches measure, so they run the build users get
 * (dist, bundle, oclif manifest) from a private snapshot: concurrent rebuilds of the
 * shared dist/ must not change it under a running benchmark.
 */
export function cliSnapshot(name: string, command: string): { scratch: string; cli: string } {
  const scratch = mkdtempSync(join(tmpdir(), `crabbox-bench-${name}-`))
  const snapshot = join(scratch, 'crabbox')
  mkdirSync(snapshot)
  for (const entry of ['bin', 'package.json']) cpSync(join(repoRoot, entry), join(snapshot, entry), { recursive: true })
  symlinkSync(join(repoRoot, 'node_modules'), join(snapshot, 'node_modules'))
  process.stderr.write('building a snapshot (npm run build: tsc, bundle, oclif manifest) ...\n')
  const build = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'build.js'), '--root', snapshot, '--ignore-type-errors'], {
    cwd: repoRoot,
    stdio: 'ignore',
  })
  if (!existsSync(join(snapshot, 'dist', 'commands', `${command}.js`)) || build.status !== 0) {
    process.stderr.write('could not build the CLI snapshot\n')
    process.exit(1)
  }
  return { scratch, cli: join(snapshot, 'bin', 'run.js') }
}

/**
 * Runs a child asynchronously (a bench's proxy lives in its own process, so a *Sync
 * child would stall it); resolves with its stdout when `capture`, rejects on a non-zero exit.
 */
export function runChild(args: string[], env: NodeJS.ProcessEnv, cwd: string, capture = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(args[0], args.slice(1), { env, cwd, stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'] })
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')} exited ${code}`))))
  })
}

/** Quotes argv for a POSIX shell (for commands handed to `ssh host <command>`). */
export const shellQuote = (args: string[]) => args.map((a) => (/^[\w@%+=:,./~-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')
