#!/usr/bin/env node
// CommonJS (bin/package.json): a warm hot command loads two small CommonJS files, this one and
// dist/thin-client.cjs, and never starts Node's ES module loader (≈ 2–4 ms of every start).
// Everything else imports the ES modules of dist/ as before.
const { readFileSync, statSync } = require('node:fs')
const module_ = require('node:module')
const { join } = require('node:path')
const { pathToFileURL } = require('node:url')

// Node 22.1+ keeps compiled code between starts (its default cache folder); Node 20 has no such cache.
module_.enableCompileCache?.()

const root = join(__dirname, '..')
const fromRoot = (path) => pathToFileURL(join(root, path)).href
const argv = process.argv.slice(2)

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? String(error)}\n`)
  process.exitCode = 1
})

async function main() {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
    // `crabbox --version` prints the bare package version without loading oclif.
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
    process.stdout.write(`${pkg.version}\n`)
  } else if (argv[0] === 'ssh' || argv[0] === 'run') {
    await hotCommand()
  } else {
    await fullCli()
  }
}

/**
 * The hot commands (`ssh --id X -- cmd`, `run --id X -- cmd`) skip oclif when src/fast-argv.ts
 * knows every word before `--`; anything else (and CRABBOX_NO_FAST_PATH=1) runs the full CLI.
 * With the connection agent up, the thin client (src/thin-client.ts) has the agent's spare
 * worker run it; when it cannot (nothing ran), the fast path runs it here.
 */
async function hotCommand() {
  const { fastCommand, thinRun, flushOutput } = await thinClient()
  const fast = fastCommand(argv)
  if (!fast) await fullCli()
  else if (await thinRun(fast, argv)) {
    // Ran in a spare worker. Exit as soon as stdout and stderr have taken everything:
    // process.exit() would drop writes still queued.
    flushOutput(() => process.exit())
  } else {
    const { runFast } = await import(fromRoot('dist/fast-path.js'))
    await runFast(fast)
  }
}

/**
 * dist/thin-client.cjs, `npm run build`'s CommonJS bundle of src/thin-client.ts; after a plain
 * `tsc` rebuild (no bundle) or without one, the same module as tsc wrote it.
 */
async function thinClient() {
  if (bundled()) {
    try {
      return require('../dist/thin-client.cjs')
    } catch (error) {
      if (error?.code !== 'MODULE_NOT_FOUND') throw error
    }
  }
  return import(fromRoot('dist/thin-client.js'))
}

async function fullCli() {
  const { dropStaleManifest } = require('./stale-manifest.js')
  const ours = dropStaleManifest()
  const { execute } = await import(bundled() ? fromRoot('dist/oclif.js') : '@oclif/core')
  // One of crabbox's own commands needs none of the core plugins (help, plugins,
  // autocomplete: no hooks run for our commands), and loading them costs every start
  // ≈ 13 ms. Anything else (help, plugins, autocomplete, a user plugin's command, a typo
  // that wants suggestions) loads them as declared in package.json.
  const id = [argv[0], `${argv[0]}:${argv[1]}`].find((candidate) => ours.includes(candidate))
  if (id) {
    const pjson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
    pjson.oclif = { ...pjson.oclif, plugins: [] }
    await execute({ loadOptions: { root, pjson } })
  } else {
    // The package's root, named: oclif would take bin/package.json for it.
    await execute({ loadOptions: { root } })
  }
}

/**
 * `npm run build` bundles the commands together with @oclif/core (scripts/build.js); the CLI
 * must then use that same bundled core. After a plain `tsc` rebuild (newer dist/base-command.js)
 * dist/ holds unbundled modules again, which import @oclif/core from node_modules.
 */
function bundled() {
  try {
    return statSync(join(root, 'dist', 'bundle.json')).mtimeMs >= statSync(join(root, 'dist', 'base-command.js')).mtimeMs
  } catch {
    return false
  }
}
