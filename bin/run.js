#!/usr/bin/env node
import { readFileSync, statSync } from 'node:fs'
import module from 'node:module'
import { fileURLToPath } from 'node:url'

// Node 22.1+ keeps compiled code between starts (its default cache folder); Node 20 has no such cache.
module.enableCompileCache?.()

const argv = process.argv.slice(2)
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  // `crabbox --version` prints the bare package version without loading oclif.
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`${pkg.version}\n`)
} else if (argv[0] === 'ssh' || argv[0] === 'run') {
  // The hot commands (`ssh --id X -- cmd`, `run --id X -- cmd`) skip oclif when src/fast-argv.ts
  // knows every word before `--`; anything else (and CRABBOX_NO_FAST_PATH=1) runs the full CLI.
  // With the connection agent up, the thin client (src/thin-client.ts) has the agent's spare
  // worker run it; when it cannot (nothing ran), the fast path runs it here.
  const { fastCommand, thinRun } = await import('../dist/thin-client.js')
  const fast = fastCommand(argv)
  if (!fast) await fullCli()
  else if (await thinRun(fast, argv)) {
    // Ran in a spare worker. Exit as soon as stdout and stderr have taken everything: a slow
    // reader leaves writes queued even on a pipe, and process.exit() would drop them.
    let pending = 2
    const flushed = () => --pending === 0 && process.exit()
    process.stdout.write('', flushed)
    process.stderr.write('', flushed)
  } else {
    const { runFast } = await import('../dist/fast-path.js')
    await runFast(fast)
  }
} else {
  await fullCli()
}

async function fullCli() {
  const { dropStaleManifest } = await import('./stale-manifest.js')
  const ours = dropStaleManifest()
  const { execute } = await import(bundled() ? '../dist/oclif.js' : '@oclif/core')
  // One of crabbox's own commands needs none of the core plugins (help, plugins,
  // autocomplete: no hooks run for our commands), and loading them costs every start
  // ≈ 13 ms. Anything else (help, plugins, autocomplete, a user plugin's command, a typo
  // that wants suggestions) loads them as declared in package.json.
  const id = [argv[0], `${argv[0]}:${argv[1]}`].find((candidate) => ours.includes(candidate))
  if (id) {
    const pjson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
    pjson.oclif = { ...pjson.oclif, plugins: [] }
    await execute({ loadOptions: { root: fileURLToPath(new URL('..', import.meta.url)), pjson } })
  } else {
    await execute({ dir: import.meta.url })
  }
}

/**
 * `npm run build` bundles the commands together with @oclif/core (scripts/build.js); the CLI
 * must then use that same bundled core. After a plain `tsc` rebuild (newer dist/base-command.js)
 * dist/ holds unbundled modules again, which import @oclif/core from node_modules.
 */
function bundled() {
  try {
    return (
      statSync(new URL('../dist/bundle.json', import.meta.url)).mtimeMs >=
      statSync(new URL('../dist/base-command.js', import.meta.url)).mtimeMs
    )
  } catch {
    return false
  }
}
