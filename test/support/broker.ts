import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freeLoopbackPort } from '../../src/services/broker-dev.js'
import { cliHome, repoRoot, spawnCli } from './cli.js'
import { copyPackage } from './package-copy.js'
import { pidAlive } from './processes.js'

/**
 * The broker under real workerd, started the way a user would: the built CLI's
 * `crabbox broker dev` as a subprocess. `env` holds the CRABBOX_* broker
 * settings it was started with (e.g. CRABBOX_SHARED_TOKEN).
 */
export interface BrokerHandle {
  url: string
  port: number
  stateDir: string
  env: Record<string, string>
  /** What `broker dev` printed on stderr up to and including its ready lines (the last start). */
  readyOutput(): string
  stop(): Promise<void>
  restart(): Promise<void>
}

export interface StartBrokerOptions {
  env?: Record<string, string>
  stateDir?: string
  port?: number
  /** Picks a free port when `port` is not given (tests of this harness race it). */
  pickPort?: () => Promise<number>
}

export { freeLoopbackPort as freePort } from '../../src/services/broker-dev.js'

const running = new Set<ChildProcess>()
let exitHookInstalled = false

let snapshot: string | undefined

/** Copies left by test processes that were killed before their exit hook ran. */
function sweepStalePackages(): void {
  for (const entry of readdirSync(tmpdir())) {
    const pid = Number(/^crabbox-broker-pkg-(\d+)-/.exec(entry)?.[1])
    if (pid && !pidAlive(pid)) rmSync(join(tmpdir(), entry), { recursive: true, force: true })
  }
}
/**
 * The package `broker dev` runs from: the test run's private copy, or (outside vitest, e.g.
 * benchmarks) one made for this process. Never the checkout itself: wrangler dev restarts the
 * Worker on every source edit, and others edit worker/ while tests run.
 */
function brokerPackage(): string {
  if (process.env.CRABBOX_E2E_PACKAGE) return process.env.CRABBOX_E2E_PACKAGE
  if (snapshot) return snapshot
  sweepStalePackages()
  snapshot = copyPackage(repoRoot, join(mkdtempSync(join(tmpdir(), `crabbox-broker-pkg-${process.pid}-`)), 'crabbox'))
  return snapshot
}

/** Resolves with its stderr once the CLI printed its ready lines; rejects with its output if it exits first. */
function waitForReady(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let stderr = ''
    const timer = setTimeout(() => fail(new Error(`broker dev not ready after ${timeoutMs} ms:\n${stderr}`)), timeoutMs)
    const onData = (chunk: string) => {
      stderr += chunk
      if (/^broker ready url=.*\n.*\n/m.test(stderr)) {
        cleanup()
        // Keep draining so a chatty child never blocks on a full pipe.
        child.stderr!.resume()
        resolve(stderr)
      }
    }
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      fail(new Error(`broker dev exited (${code ?? signal}) before ready:\n${stderr}`))
    const cleanup = () => {
      clearTimeout(timer)
      child.stderr!.off('data', onData)
      child.off('exit', onExit)
    }
    const fail = (error: Error) => {
      cleanup()
      child.kill('SIGTERM')
      reject(error)
    }
    child.stderr!.setEncoding('utf8').on('data', onData)
    child.once('exit', onExit)
  })
}

function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    // SIGTERM lets the CLI take wrangler's process group (workerd included) down with it.
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    child.once('exit', () => {
      clearTimeout(timer)
      running.delete(child)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

export async function startBroker(options: StartBrokerOptions = {}): Promise<BrokerHandle> {
  if (!exitHookInstalled) {
    exitHookInstalled = true
    // SIGTERM, not SIGKILL: the CLI still cleans up its workerd after this process is gone.
    process.once('exit', () => {
      for (const child of running) child.kill('SIGTERM')
      if (snapshot) rmSync(join(snapshot, '..'), { recursive: true, force: true })
    })
  }
  const pickPort = options.pickPort ?? freeLoopbackPort
  let port = options.port ?? (await pickPort())
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'crabbox-broker-state-'))
  const env = { ...options.env }
  const home = cliHome()
  let child: ChildProcess | undefined
  let readyOutput = ''

  const start = async () => {
    child = spawnCli(['broker', 'dev', '--port', String(port), '--state', stateDir], {
      home,
      env,
      cli: join(brokerPackage(), 'bin', 'run.js'),
    })
    child.stdin!.end()
    child.stdout!.resume()
    running.add(child)
    try {
      readyOutput = await waitForReady(child, 90_000)
    } catch (error) {
      await stopChild(child)
      throw error
    }
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await start()
      break
    } catch (error) {
      // The free port we picked was taken before wrangler bound it: ephemeral ports are shared
      // with every outgoing connection of the parallel tests. A port the caller chose is theirs.
      const taken = /already in use/.test((error as Error).message)
      if (!taken || options.port !== undefined || attempt >= 3) throw error
      port = await pickPort()
    }
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stateDir,
    env,
    readyOutput: () => readyOutput,
    stop: () => stopChild(child),
    async restart() {
      await stopChild(child)
      await start()
    },
  }
}
