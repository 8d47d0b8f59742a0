import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { CrabboxError, usageError } from '../errors.js'
import type { Progress } from '../ui/progress.js'
import { brokerSources, locateWrangler, scratchConfig } from './wrangler.js'

export interface BrokerDevOptions {
  port: number
  /** Where workerd keeps Durable Object storage between runs (`--persist-to`). */
  stateDir: string
  /** Pass wrangler's own output through to stderr. */
  debug: boolean
  progress: Progress
  env?: NodeJS.ProcessEnv
}

export interface BrokerDevResult {
  url: string
  port: number
  stateDir: string
  /** The signal that stopped the broker. */
  stoppedBy: string
}

// The CLI's own client settings; every other CRABBOX_* variable is a broker setting.
const clientOnly =
  /^CRABBOX_(CONFIG|COORDINATOR(_.+)?|ACCESS_(CLIENT_ID|CLIENT_SECRET|TOKEN)|PROFILE|TARGET(_OS)?|SSH_.+|SYNC_.+|ENV_ALLOW|AGENT_.+|WORK_ROOT|STATIC_(ID|NAME|HOST|USER|PORT|WORK_ROOT)|WRANGLER)$/

/** The broker settings `crabbox broker dev` hands to the Worker: every CRABBOX_* that is not a CLI setting. */
export function brokerVars(env: NodeJS.ProcessEnv): Record<string, string> {
  const vars: Record<string, string> = {}
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith('CRABBOX_') && value !== undefined && !clientOnly.test(key)) vars[key] = value
  }
  return vars
}

/**
 * The state folder's own session secret (signs `cbxu_` user tokens): created once, 0600, so
 * GitHub login works in dev without the shared token ever signing anything, and tokens
 * survive restarts on the same state.
 */
async function stateSessionSecret(stateDir: string): Promise<string> {
  const file = join(stateDir, 'session-secret')
  const existing = await readFile(file, 'utf8').catch(() => '')
  if (existing.trim()) return existing.trim()
  const secret = randomBytes(32).toString('hex')
  await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' }).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error
  })
  // Whoever wrote first wins (two brokers on one state folder agree).
  return (await readFile(file, 'utf8')).trim()
}

/**
 * A broker nobody can log in to is no use: without a shared, admin or GitHub login setting,
 * `broker dev` uses a shared dev token kept in the state folder (0600, the same across
 * restarts). Returns the file when it did, so the ready line can say how to use it.
 */
async function devToken(vars: Record<string, string>, stateDir: string): Promise<string | undefined> {
  if (vars.CRABBOX_SHARED_TOKEN || vars.CRABBOX_ADMIN_TOKEN || vars.CRABBOX_GITHUB_CLIENT_ID) return undefined
  const file = join(resolve(stateDir), 'dev-token')
  let token = ''
  try {
    token = (await readFile(file, 'utf8')).trim()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  if (!token) {
    token = `dev-${randomBytes(18).toString('base64url')}`
    await writeFile(file, `${token}\n`, { mode: 0o600 })
  }
  vars.CRABBOX_SHARED_TOKEN = token
  return file
}

/** The exact command that points this machine's CLI at the local broker. */
function connectCommand(url: string, tokenFile: string | undefined, env: NodeJS.ProcessEnv): string {
  const setBroker = `crabbox config set-broker --url ${url}`
  if (tokenFile) return `${setBroker} --token-stdin < ${tokenFile}`
  const variable = env.CRABBOX_SHARED_TOKEN ? 'CRABBOX_SHARED_TOKEN' : env.CRABBOX_ADMIN_TOKEN ? 'CRABBOX_ADMIN_TOKEN' : undefined
  return variable ? `printf '%s\\n' "$${variable}" | ${setBroker} --token-stdin` : `${setBroker} && crabbox login`
}

/**
 * One `KEY='value'` line that wrangler's dotenv + dotenv-expand reads back
 * byte for byte: single (or back) quotes keep newlines and `"` literal, and
 * every `$` is escaped because dotenv-expand would substitute `$NAME`.
 */
function envFileLine(key: string, value: string): string {
  const quote = !value.includes("'") ? "'" : !value.includes('`') ? '`' : undefined
  if (quote === undefined || value.includes('\r')) {
    throw usageError(
      `${key} cannot be passed to the local broker: it contains both ' and \` quotes or a carriage return`,
      `Remove one kind of quote from ${key} (JSON needs neither), then run broker dev again.`,
    )
  }
  return `${key}=${quote}${value.replaceAll('$', '\\$')}${quote}\n`
}

function assertPortFree(port: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer()
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? usageError(`port ${port} on 127.0.0.1 is already in use`, 'Stop whatever listens there, or pick another port with --port.')
          : error,
      ),
    )
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePromise()))
  })
}

/** A port the kernel just handed out on 127.0.0.1 (random, so parallel callers rarely collide). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolvePromise(address.port) : reject(new Error('no TCP port'))))
    })
  })
}

/** Keeps the last lines of wrangler's output for error messages. */
function tailBuffer(limit = 40) {
  let lines: string[] = []
  let partial = ''
  return {
    push(chunk: string) {
      const parts = (partial + chunk).split('\n')
      partial = parts.pop() ?? ''
      lines = [...lines, ...parts].slice(-limit)
    },
    text: () => [...lines, partial].filter((line) => line.trim() !== '').join('\n'),
  }
}

async function waitForHealth(url: string, child: ChildProcess, deadline: number): Promise<boolean> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false
    try {
      const response = await fetch(`${url}/v1/health`, { signal: AbortSignal.timeout(2000) })
      if (response.ok) return true
      await response.body?.cancel()
    } catch {}
    await new Promise((r) => setTimeout(r, 25))
  }
  return false
}

/** Kills wrangler's whole process group, so workerd goes with it. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal)
  } catch {}
}

/** wrangler's environment: no metrics, no Cloudflare lookups, colour only with --debug. */
function wranglerEnv(env: NodeJS.ProcessEnv, debug: boolean): NodeJS.ProcessEnv {
  const childEnv: NodeJS.ProcessEnv = {
    ...env,
    WRANGLER_SEND_METRICS: 'false',
    // No lookups at Cloudflare from a local broker: the Request.cf placeholder is enough.
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    FORCE_COLOR: debug && !env.NO_COLOR ? env.FORCE_COLOR : '0',
  }
  // Would hand the whole process environment to the Worker.
  delete childEnv.CLOUDFLARE_INCLUDE_PROCESS_ENV

  return childEnv
}

/**
 * Runs the broker Worker locally under `wrangler dev` (workerd) in the
 * foreground until SIGINT/SIGTERM, with Durable Object state in `stateDir`.
 */
export async function runBrokerDev(options: BrokerDevOptions): Promise<BrokerDevResult> {
  const env = options.env ?? process.env
  const { root, config } = brokerSources(),
    wrangler = locateWrangler(env, root)
  await assertPortFree(options.port)
  // The state holds every lease, run and log: private to this user (0700), even if the folder exists.
  await mkdir(options.stateDir, { recursive: true, mode: 0o700 })
    .then(() => chmod(options.stateDir, 0o700))
    .catch((cause: NodeJS.ErrnoException) => {
      throw usageError(
        `cannot use ${options.stateDir} as the broker state folder (${cause.code ?? cause.message})`,
        'Pass a writable directory with --state.',
      )
    })

  // Settings go through an env file in a private temp dir: not in argv (ps shows argv), not in the repo.
  const scratch = await mkdtemp(join(tmpdir(), 'crabbox-broker-dev-'))
  const envFile = join(scratch, 'broker.env')
  const devConfig = await scratchConfig(config, root, scratch)
  const vars = brokerVars(env)
  // Login URLs name the broker's configured address only (never a request's Host): here, its own.
  vars.CRABBOX_PUBLIC_URL ??= `http://127.0.0.1:${options.port}`
  // GitHub login needs a session secret (the shared token never signs user tokens): one per state folder unless given.
  if (!vars.CRABBOX_SESSION_SECRET?.trim()) vars.CRABBOX_SESSION_SECRET = await stateSessionSecret(options.stateDir)
  const tokenFile = await devToken(vars, options.stateDir)
  if (tokenFile) {
    options.progress.warn(
      `no CRABBOX_SHARED_TOKEN, CRABBOX_ADMIN_TOKEN or GitHub login set: clients use the dev token in ${tokenFile} (set CRABBOX_SHARED_TOKEN to choose your own)`,
    )
  }
  await writeFile(
    envFile,
    Object.entries(vars)
      .map(([key, value]) => envFileLine(key, value))
      .join(''),
    { mode: 0o600 },
  )

  const childEnv = wranglerEnv(env, options.debug)

  const url = `http://127.0.0.1:${options.port}`
  const args = [
    ...wrangler.prefix,
    'dev',
    '--config',
    devConfig,
    '--ip',
    '127.0.0.1',
    '--port',
    String(options.port),
    '--persist-to',
    resolve(options.stateDir),
    '--env-file',
    envFile,
    '--show-interactive-dev-session=false',
    // wrangler probes 9229 upwards for its inspector and races other brokers starting at once.
    '--inspector-port',
    String(await freeLoopbackPort()),
    '--log-level',
    options.debug ? 'log' : 'warn',
  ]
  // Its own process group: signals reach wrangler and workerd together, and never the user's shell job twice.
  // workerd creates the state's files: umask 077 (inherited at spawn) makes them 0600 and its folders 0700.
  const umask = process.umask(0o077)
  let child: ChildProcess
  try {
    child = spawn(wrangler.file, args, { cwd: scratch, env: childEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  } finally {
    process.umask(umask)
  }
  const tail = tailBuffer()
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      tail.push(chunk)
      if (options.debug) process.stderr.write(chunk)
    })
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once('exit', (code, signal) => resolveExit({ code, signal })),
  )
  child.once('error', () => {})
  const onExit = () => killGroup(child, 'SIGKILL')
  process.once('exit', onExit)

  let stopping: string | undefined
  const stop = (signal: NodeJS.Signals) => {
    stopping ??= signal
    killGroup(child, 'SIGTERM')
    setTimeout(() => killGroup(child, 'SIGKILL'), 5000).unref()
  }
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
  const handlers = signals.map((signal) => [signal, () => stop(signal)] as const)
  for (const [signal, handler] of handlers) process.on(signal, handler)

  try {
    const ready = await waitForHealth(url, child, Date.now() + 90_000)
    if (!ready && stopping === undefined) {
      killGroup(child, 'SIGKILL')
      const { code, signal } = await exited
      throw new CrabboxError(
        `the local broker did not start (wrangler ${code === null ? `exited on ${signal}` : `exited ${code}`})\n${tail.text()}`,
        {
          exit: 'provisioning',
          hint: "Run again with --debug to see all of wrangler's output.",
        },
      )
    }
    if (ready) {
      options.progress.info(`broker ready url=${url}`)
      options.progress.info(`connect this machine: ${connectCommand(url, tokenFile, env)}`)
    }
    const { code, signal } = await exited
    // workerd may outlive wrangler for a moment; it is in the same group.
    killGroup(child, 'SIGKILL')
    if (stopping === undefined) {
      throw new CrabboxError(
        `the local broker stopped unexpectedly (wrangler ${code === null ? `exited on ${signal}` : `exited ${code}`})\n${tail.text()}`,
        {
          hint: "Run again with --debug to see all of wrangler's output.",
        },
      )
    }
    return { url, port: options.port, stateDir: resolve(options.stateDir), stoppedBy: stopping }
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler)
    process.off('exit', onExit)
    await rm(scratch, { recursive: true, force: true })
  }
}
