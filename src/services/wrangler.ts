import { spawn } from 'node:child_process'
import { accessSync, constants, existsSync, readFileSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { delimiter, join, resolve } from 'node:path'
import { CrabboxError } from '../errors.js'

/**
 * wrangler is not a dependency of the crabbox package: it brings workerd and esbuild (well over
 * 100 MB), and only the operator who runs or deploys a broker needs it. `broker dev`, `broker
 * deploy` and `broker secrets` find it here, in this order: CRABBOX_WRANGLER (its executable),
 * the wrangler installed beside crabbox (a source checkout's node_modules, or the same global
 * prefix), then `wrangler` on PATH. Missing: exit 3 with the exact install line.
 */
export interface Wrangler {
  /** The program to spawn and the arguments that come before wrangler's own. */
  file: string
  prefix: string[]
  /** Where it was found, for messages. */
  source: string
}

/** The package root: bin/, dist/, wrangler.toml and worker/ (the broker's code) sit here. */
export const packageRoot = (): string => resolve(import.meta.dirname, '..', '..')

/** The wrangler version range the broker is tested with (package.json peerDependencies). */
export function wranglerRange(root = packageRoot()): string {
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { peerDependencies?: Record<string, string> }
    return pkg.peerDependencies?.wrangler ?? '4'
  } catch {
    return '4'
  }
}

/** The broker's wrangler.toml; its `main` (worker/index.ts) ships in the package. */
export function brokerSources(root = packageRoot()): { root: string; config: string } {
  const config = join(root, 'wrangler.toml')
  if (!existsSync(config) || !existsSync(join(root, 'worker', 'index.ts'))) {
    throw new CrabboxError(`this crabbox has no broker code (${config} or worker/index.ts is missing)`, {
      exit: 'auth',
      code: 'broken_install',
      hint: 'Reinstall crabbox (npm install -g crabbox), or run it from a source checkout after npm ci.',
    })
  }
  return { root, config }
}

/**
 * A copy of the broker's wrangler.toml in `dir` whose `main` is the package's worker/index.ts:
 * wrangler keeps its scratch files (`.wrangler/`) beside the config, so the package folder (a
 * global install may be root-owned) is only read.
 */
export async function scratchConfig(config: string, root: string, dir: string): Promise<string> {
  const copy = join(dir, 'wrangler.toml')
  const text = (await readFile(config, 'utf8')).replace(/^main\s*=.*$/m, `main = ${JSON.stringify(join(root, 'worker', 'index.ts'))}`)
  await writeFile(copy, text)
  return copy
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    const file = join(dir, name)
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {}
  }
  return undefined
}

export function locateWrangler(env: NodeJS.ProcessEnv = process.env, root = packageRoot()): Wrangler {
  const explicit = env.CRABBOX_WRANGLER?.trim()
  if (explicit) {
    try {
      accessSync(explicit, constants.X_OK)
    } catch {
      throw new CrabboxError(`CRABBOX_WRANGLER=${explicit} is not an executable file`, {
        exit: 'auth',
        code: 'missing_dependency',
        hint: `Point CRABBOX_WRANGLER at wrangler's executable, or unset it and install wrangler: npm install -g wrangler@${wranglerRange(root)}`,
      })
    }
    return { file: explicit, prefix: [], source: 'CRABBOX_WRANGLER' }
  }
  try {
    const wranglerRoot = resolve(createRequire(join(root, 'package.json')).resolve('wrangler/package.json'), '..')
    // bin/wrangler.js only re-spawns node on wrangler-dist/cli.js with these flags: calling it directly saves a node start.
    const cli = join(wranglerRoot, 'wrangler-dist', 'cli.js')
    const prefix = existsSync(cli) ? ['--no-warnings', '--experimental-vm-modules', cli] : [join(wranglerRoot, 'bin', 'wrangler.js')]
    return { file: process.execPath, prefix, source: wranglerRoot }
  } catch {}
  const found = onPath('wrangler', env)
  if (found) return { file: found, prefix: [], source: found }
  const checkout = existsSync(join(root, 'package-lock.json'))
  throw new CrabboxError('wrangler is not installed: crabbox runs and deploys the broker with it', {
    exit: 'auth',
    code: 'missing_dependency',
    hint: checkout
      ? 'Run `npm ci` in this crabbox checkout, then try again.'
      : `Install it next to crabbox: npm install -g wrangler@${wranglerRange(root)} (or set CRABBOX_WRANGLER to a wrangler executable).`,
  })
}

export interface WranglerResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs one wrangler command to completion. `input` goes to its stdin (secrets travel only
 * there, never in argv or a file); the output is collected, not shown.
 */
export function runWrangler(
  wrangler: Wrangler,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; input?: string },
): Promise<WranglerResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(wrangler.file, [...wrangler.prefix, ...args], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    child.stdin.on('error', () => {})
    child.stdin.end(options.input ?? '')
    child.once('error', (cause) =>
      reject(new CrabboxError(`cannot start wrangler (${wrangler.source})`, { exit: 'auth', code: 'missing_dependency', cause })),
    )
    child.once('close', (code) => resolvePromise({ code, stdout, stderr }))
  })
}
