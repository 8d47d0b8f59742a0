#!/usr/bin/env node
import { readFileSync, statSync } from 'node:fs'

// Fast path: `crabbox --version` prints the bare package version without loading oclif.
const argv = process.argv.slice(2)
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`${pkg.version}\n`)
} else {
  const { dropStaleManifest } = await import('./stale-manifest.js')
  dropStaleManifest()
  const { execute } = await import(bundled() ? '../dist/oclif.js' : '@oclif/core')
  await execute({ dir: import.meta.url })
}

/**
 * `npm run build` bundles the commands together with @oclif/core (scripts/build.js); the CLI
 * must then use that same bundled core. After a plain `tsc` rebuild (newer dist/base-command.js)
 * dist/ holds unbundled modules again, which import @oclif/core from node_modules.
 */
function bundled() {
  try {
    return statSync(new URL('../dist/bundle.json', import.meta.url)).mtimeMs >= statSync(new URL('../dist/base-command.js', import.meta.url)).mtimeMs
  } catch {
    return false
  }
}
