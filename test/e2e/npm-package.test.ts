import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/broker.js'
import { cliHome, repoRoot, type CliHome, type CliResult } from '../support/cli.js'
import { gitRepo, until } from '../support/fixtures.js'
import { packAndInstall, type InstalledPackage } from '../support/npm-package.js'

// What the package may hold: the CLI (bin/, dist/ without source maps, the oclif manifest) and
// the broker's code (wrangler.toml, worker/, the src/protocol and src/cloud modules it imports).
const allowed = [
  /^(README\.md|package\.json|oclif\.manifest\.json|wrangler\.toml)$/,
  /^bin\/[\w-]+\.js$/,
  // bin/ is CommonJS (its own package.json says so): a warm command never starts the ES module loader.
  /^bin\/package\.json$/,
  /^dist\/([\w.-]+\/)*[\w.-]+\.js$/,
  /^dist\/bundle\.json$/,
  // The lease side of egress, copied to the runner by `egress start`.
  /^dist\/egress-client\.cjs$/,
  // The thin client as CommonJS, which bin/run.js requires.
  /^dist\/thin-client\.cjs$/,
  // The WebVNC page's script (noVNC and the page), bundled by `npm run build`.
  /^worker\/portal\/generated\/vnc-viewer\.js$/,
  /^worker\/([\w-]+\/)*[\w-]+\.tsx?$/,
  /^worker\/tsconfig\.json$/,
  /^src\/(protocol|cloud)\/[\w-]+\.ts$/,
]
const required = [
  'bin/run.js',
  'bin/package.json',
  'dist/fast-path.js',
  'dist/thin-client.js',
  'dist/thin-client.cjs',
  'dist/oclif.js',
  'dist/egress-client.cjs',
  'oclif.manifest.json',
  'wrangler.toml',
  'worker/index.ts',
  'worker/portal/generated/vnc-viewer.js',
]

// Node 20 (this process) and every other Node the run was given (`.ci/run` installs Node 22 from the npm registry).
const nodes = [process.execPath, ...(process.env.CRABBOX_TEST_NODES ?? '').split(':').filter(Boolean)]

let pkg: InstalledPackage
const homes: CliHome[] = []
beforeAll(() => {
  pkg = packAndInstall()
}, 240_000)
afterAll(() => {
  for (const home of homes) rmSync(home.dir, { recursive: true, force: true })
  if (pkg) rmSync(pkg.dir, { recursive: true, force: true })
})

/** The installed `crabbox` under `node`, from a folder outside the repository, with a PATH of its own. */
function crabbox(node: string, args: string[], options: { cwd?: string; env?: Record<string, string>; home?: CliHome } = {}) {
  const home = options.home ?? cliHome()
  homes.push(home)
  const env: Record<string, string> = {
    PATH: [join(pkg.prefix, 'bin'), dirname(node), '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'].join(':'),
    ...home.env,
    CRABBOX_NO_AGENT: '1',
    ...options.env,
  }
  return spawn(node, [join(pkg.root, 'bin', 'run.js'), ...args], { cwd: options.cwd ?? pkg.dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
}

function finish(child: ReturnType<typeof crabbox>): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    }),
  )
}

describe('npm package', () => {
  it('holds the CLI and the broker code and nothing else', () => {
    const paths = pkg.files.map((file) => file.path)
    expect(paths.filter((path) => !allowed.some((rule) => rule.test(path)))).toEqual([])
    for (const path of required) expect(paths).toContain(path)
    expect(paths.some((path) => /(^|\/)(test|bench)\/|\.map$/.test(path))).toBe(false)
    const manifest = JSON.parse(readFileSync(join(pkg.root, 'package.json'), 'utf8'))
    expect(manifest.peerDependencies.wrangler).toBeTruthy()
    expect(manifest.dependencies.wrangler).toBeUndefined()
  })
})

describe.each(nodes)('the installed package under %s', (node) => {
  it('--version, --help and autocomplete', async () => {
    const version = await finish(crabbox(node, ['--version']))
    expect(version).toMatchObject({ code: 0, stdout: `${JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version}\n` })
    const help = await finish(crabbox(node, ['--help']))
    expect(help.code, help.stderr).toBe(0)
    expect(help.stdout).toContain('broker dev')
    const complete = await finish(crabbox(node, ['autocomplete', 'bash']))
    expect(complete.code, complete.stderr).toBe(0)
    expect(complete.stdout).toContain('crabbox autocomplete')
  })

  it('run -- uname -a on the embedded local provider', async () => {
    const repo = gitRepo('crabbox-npm-run-')
    try {
      const result = await finish(crabbox(node, ['run', '--', 'uname', '-a'], { cwd: repo }))
      expect(result.code, result.stderr).toBe(0)
      expect(result.stdout).toMatch(/^Linux /)
    } finally {
      rmSync(repo, { recursive: true, force: true })
    }
  })

  it('a plugin links in and runs', async () => {
    const home = cliHome()
    const plugin = mkdtempSync(join(tmpdir(), 'crabbox-npm-plugin-'))
    try {
      mkdirSync(join(plugin, 'commands'))
      writeFileSync(
        join(plugin, 'package.json'),
        JSON.stringify({ name: 'crabbox-plugin-hi', version: '1.0.0', type: 'module', oclif: { commands: './commands' } }),
      )
      writeFileSync(
        join(plugin, 'commands', 'hi.js'),
        "import { Command } from '@oclif/core'\nexport default class Hi extends Command { async run() { this.log('hi from a plugin') } }\n",
      )
      // The plugin's own @oclif/core: the one the installed package brought.
      symlinkSync(join(pkg.root, 'node_modules'), join(plugin, 'node_modules'), 'dir')
      const link = await finish(crabbox(node, ['plugins', 'link', plugin], { home }))
      expect(link.code, link.stderr).toBe(0)
      expect(await finish(crabbox(node, ['hi'], { home }))).toMatchObject({ code: 0, stdout: 'hi from a plugin\n' })
    } finally {
      rmSync(plugin, { recursive: true, force: true })
    }
  })

  it('broker dev without wrangler says exactly what to install (exit 3)', async () => {
    const result = await finish(crabbox(node, ['broker', 'dev', '--port', String(await freePort())]))
    expect(result.code).toBe(3)
    expect(result.stderr).toContain('wrangler is not installed')
    expect(result.stderr).toMatch(/npm install -g wrangler@\^4\.\d+\.\d+/)
  })

  it('broker dev runs the packaged broker with a wrangler found on PATH', async () => {
    // A wrangler installed elsewhere (here: the checkout's), reached through PATH as a user's would be.
    const tools = mkdtempSync(join(tmpdir(), 'crabbox-npm-wrangler-'))
    symlinkSync(join(repoRoot, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), join(tools, 'wrangler'))
    const port = await freePort()
    const state = join(tools, 'state')
    const child = crabbox(node, ['broker', 'dev', '--port', String(port), '--state', state], {
      env: { PATH: `${tools}:${dirname(node)}:/usr/bin:/bin`, CRABBOX_SHARED_TOKEN: 'npm-package-test' },
    })
    const done = finish(child)
    try {
      const health = await until(
        'the packaged broker',
        async () => {
          if (child.exitCode !== null) throw new Error(`broker dev exited:\n${(await done).stderr}`)
          return fetch(`http://127.0.0.1:${port}/v1/health`)
            .then((response) => (response.ok ? response.json() : undefined))
            .catch(() => undefined)
        },
        90_000,
        250,
      )
      expect(health).toMatchObject({ ok: true })
    } finally {
      child.kill('SIGTERM')
      const result = await done
      rmSync(tools, { recursive: true, force: true })
      expect(result.stderr).toContain(`broker ready url=http://127.0.0.1:${port}`)
      // wrangler worked in a temporary folder: the installed package was only read.
      expect(existsSync(join(pkg.root, '.wrangler'))).toBe(false)
    }
  })
})
