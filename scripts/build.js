#!/usr/bin/env node
// `npm run build`: tsc emits dist/, then esbuild bundles each command (with @oclif/core and
// our own modules) over its dist/commands/*.js file, code split so shared code lands in
// dist/chunks/ once, then `oclif manifest`. A start then loads a handful of files instead of
// several hundred ESM modules. Heavy libraries stay outside the bundle and are loaded with
// import() only by the code paths that need them.
//
//   node scripts/build.js [--root DIR] [--ignore-type-errors]
//   DIR gets dist/ and oclif.manifest.json (default: the repo). Benchmarks building a private
//   snapshot pass --ignore-type-errors: tsc still emits when someone else's file has an error.
//
// A plain `tsc -p tsconfig.build.json` afterwards rewrites dist/ unbundled; bin/run.js notices
// (dist/bundle.json is older than dist/base-command.js) and runs the tsc output, so a quick
// rebuild never runs stale bundled code.
import { spawnSync } from 'node:child_process'
import { builtinModules } from 'node:module'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const rootArg = process.argv.indexOf('--root')
const root = rootArg > 0 ? process.argv[rootArg + 1] : repo
const dist = join(root, 'dist')
const bin = (name) => join(repo, 'node_modules', '.bin', name)

function step(file, args, cwd, { mayFail = false } = {}) {
  const result = spawnSync(file, args, { cwd, stdio: 'inherit', env: { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true' } })
  if (result.status !== 0 && !mayFail) process.exit(result.status ?? 1)
}

step(bin('tsc'), ['-p', join(repo, 'tsconfig.build.json'), '--outDir', dist], repo, {
  mayFail: process.argv.includes('--ignore-type-errors'),
})

// Loaded lazily by the code that needs them (SSH, sync, control socket, cloud APIs), or
// native/optional: they stay ordinary node_modules imports. Optional peers (the Daytona SDK,
// wrangler) are never bundled: a user installs them beside crabbox.
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'))
const bundled = new Set(['@oclif/core', 'valibot', 'ignore'])
const external = [...Object.keys(pkg.dependencies), ...Object.keys(pkg.peerDependencies ?? {})]
  .filter((name) => !bundled.has(name))
  .flatMap((name) => [name, `${name}/*`])

const commandFiles = readdirSync(join(dist, 'commands'), { recursive: true })
  .map(String)
  .filter((file) => file.endsWith('.js'))
const entryPoints = Object.fromEntries(commandFiles.map((file) => [join('commands', file.slice(0, -3)), join(dist, 'commands', file)]))
// The root help class and the hooks (package.json oclif config) share the commands' chunks too.
for (const file of ['help.js', 'hooks/not-found.js']) entryPoints[file.slice(0, -3)] = join(dist, file)
// bin/run.js takes `execute` from here, so the CLI and its commands share one @oclif/core.
const coreEntry = join(dist, 'oclif-core-entry.js')
writeFileSync(coreEntry, "export { execute } from '@oclif/core'\n")
entryPoints.oclif = coreEntry

// Our modules locate files beside themselves (the agent and local-server scripts, the repo
// root) with import.meta.url/dirname/filename; in a chunk those would point into dist/chunks/.
// Each use becomes the module's own dist location, from a per-file constant added below.
const distModuleUrls = {
  name: 'dist-module-urls',
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith(dist + sep) || args.path.includes(`${sep}node_modules${sep}`)) return undefined
      const text = readFileSync(args.path, 'utf8')
      if (!/import\.meta\.(url|dirname|filename)/.test(text)) return undefined
      const own = `new URL(${JSON.stringify(relative(dist, args.path).split(sep).join('/'))}, __crabboxDist)`
      const contents = text
        .replaceAll('import.meta.url', `${own}.href`)
        .replaceAll('import.meta.filename', `__crabboxFilePath(${own})`)
        .replaceAll('import.meta.dirname', `__crabboxDirname(__crabboxFilePath(${own}))`)
      return { contents, loader: 'js' }
    })
  },
}

const out = join(dist, '.bundle')
rmSync(out, { recursive: true, force: true })
const options = {
  entryPoints,
  outdir: out,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  chunkNames: 'chunks/[name]-[hash]',
  write: false,
  // Less to read and compile on every start; identifiers keep their names (stack traces, class names).
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  plugins: [distModuleUrls],
}
const result = await esbuild.build(options)
rmSync(coreEntry)
// The fast path (src/fast-path.ts: bin/run.js starts warm `ssh`/`run --id` there, without
// oclif) is bundled on its own into one file, dist/fast-path.js: without code splitting
// esbuild folds its lazy imports of our own modules into that file, so a warm start opens
// one file instead of ≈ 30 chunks (docs/performance.md, the hot path). Heavy libraries stay
// external as above.
// One file has no chunk boundary to defer a library's `import` statement behind: esbuild would
// hoist `import … from 'ssh2'` (and ws, tar-stream, the cloud SDKs, and Node's own modules such
// as node:zlib and node:child_process) to the top of the file and load them on every start. Here such an import becomes a require() made when the importing
// module first runs: our modules are wrapped to run on their first (lazy) import, so the library
// loads only on the code path that needs it, as it does in the chunked build.
// Node loads these while it starts anyway (os is small): they stay plain imports, since each
// importing module would otherwise copy the whole module object into an ES namespace.
const bootstrapped = new Set([
  'events',
  'buffer',
  'path',
  'querystring',
  'async_hooks',
  'timers',
  'util',
  'fs',
  'url',
  'string_decoder',
  'os',
])
const lazyLibraries = {
  name: 'lazy-libraries',
  setup(build) {
    const names = new Set(external.filter((name) => !name.endsWith('/*')))
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      const name = args.path.startsWith('@') ? args.path.split('/').slice(0, 2).join('/') : args.path.split('/')[0]
      const builtin = args.path.replace(/^node:/, '')
      const library = names.has(name) || (builtinModules.includes(builtin) && !bootstrapped.has(builtin))
      if (args.kind !== 'import-statement' || !library) return undefined
      return { path: args.path, namespace: 'lazy-library' }
    })
    // Node-style interop gives a default import the whole module.exports; a transpiled ES module's
    // default export is its `default` (partysocket/ws), so that is what the default import gets.
    build.onLoad({ filter: /.*/, namespace: 'lazy-library' }, (args) => ({
      contents: `const m = require(${JSON.stringify(args.path)})\nmodule.exports = m && m.__esModule && m.default !== undefined ? Object.assign(m.default, m) : m\n`,
      loader: 'js',
    }))
  },
}
const fast = await esbuild.build({
  ...options,
  entryPoints: { 'fast-path': join(dist, 'fast-path.js') },
  splitting: false,
  plugins: [lazyLibraries, ...options.plugins],
})

// The thin client (src/thin-client.ts) is a file of its own: a few KiB, Node modules only, and
// CommonJS, like bin/run.js that requires it: a warm command never starts Node's ES module
// loader. It finds dist/fast-path.js beside itself (import.meta.url becomes its own file URL).
await esbuild.build({
  entryPoints: [join(dist, 'thin-client.js')],
  outfile: join(dist, 'thin-client.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  banner: { js: "const __crabboxThinUrl = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': '__crabboxThinUrl' },
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
})

// The lease-side egress client (src/services/egress/client-main.ts) as one CommonJS file with
// `ws` inside, for the runner's own node (18 or newer): `egress start` copies it over SSH.
await esbuild.build({
  entryPoints: [join(dist, 'services', 'egress', 'client-main.js')],
  outfile: join(dist, 'egress-client.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node18',
  external: ['bufferutil', 'utf-8-validate'],
  minifySyntax: true,
  logLevel: 'warning',
})

rmSync(join(dist, 'chunks'), { recursive: true, force: true })
rmSync(join(dist, 'fast'), { recursive: true, force: true })
const written = []
for (const file of [...result.outputFiles, ...fast.outputFiles]) {
  const path = relative(out, file.path)
  const up = '../'.repeat(path.split(sep).length - 1) || './'
  // CommonJS code inside @oclif/core calls require(); ESM output needs one made for it.
  const header = [
    "import { createRequire as __crabboxRequire } from 'node:module';",
    "import { dirname as __crabboxDirname } from 'node:path';",
    "import { fileURLToPath as __crabboxFilePath } from 'node:url';",
    'const require = __crabboxRequire(import.meta.url);',
    `const __crabboxDist = new URL(${JSON.stringify(up)}, import.meta.url);`,
    '',
  ].join('\n')
  const target = join(dist, path)
  mkdirSync(dirname(target), { recursive: true })
  writeFileSync(target, header + file.text)
  written.push(path.split(sep).join('/'))
}
// Written last: bin/run.js uses the bundle only while this is newer than the tsc output.
writeFileSync(join(dist, 'bundle.json'), `${JSON.stringify({ files: written.length }, null, 2)}\n`)

// The portal's bundled browser code (noVNC and the WebVNC page's client), imported by the Worker.
step(process.execPath, [join(repo, 'scripts', 'build-portal-assets.js')], repo)

if (!existsSync(join(root, 'package.json'))) throw new Error(`${root} has no package.json`)
step(process.execPath, [join(repo, 'node_modules', 'oclif', 'bin', 'run.js'), 'manifest'], root)
const size = written.reduce((sum, path) => sum + statSync(join(dist, path)).size, 0)
process.stderr.write(`bundled ${commandFiles.length} commands into ${written.length} files (${(size / 1024).toFixed(0)} KiB)\n`)
