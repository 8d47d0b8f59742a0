#!/usr/bin/env node
import { readFileSync } from 'node:fs'

// Fast path: `crabbox --version` prints the bare package version without loading oclif.
const argv = process.argv.slice(2)
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`${pkg.version}\n`)
} else {
  const { dropStaleManifest } = await import('./stale-manifest.js')
  dropStaleManifest()
  const { execute } = await import('@oclif/core')
  await execute({ dir: import.meta.url })
}
