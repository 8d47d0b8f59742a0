import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..')
// Under vitest's integration, harness and e2e projects, the run's private copy of the package (test/support/e2e-package.ts).
export const cliPath = join(process.env.CRABBOX_E2E_PACKAGE ?? repoRoot, 'bin', 'run.js')

/** A throwaway home for one test: config, state and runtime dirs of its own. */
export interface CliHome {
  dir: string
  env: Record<string, string>
}

export function cliHome(): CliHome {
  const dir = mkdtempSync(join(tmpdir(), 'crabbox-home-'))
  return {
    dir,
    env: {
      HOME: dir,
      XDG_CONFIG_HOME: join(dir, 'config'),
      XDG_STATE_HOME: join(dir, 'state'),
      XDG_RUNTIME_DIR: join(dir, 'run'),
      NO_COLOR: '1',
    },
  }
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface CliOptions {
  cwd?: string
  env?: Record<string, string | undefined>
  home?: CliHome
  input?: string
  /** `ignore`: stdin from /dev/null, as a caller that gives the CLI none (default: a pipe carrying `input`). */
  stdin?: 'pipe' | 'ignore'
  timeoutMs?: number
  /** Another copy of bin/run.js to start (default: this checkout's). */
  cli?: string
}

/**
 * Starts the built CLI with its stdin closed and collects its output as it comes (`output`, read
 * while it runs); `exited` resolves with its exit code.
 */
export function startCli(args: string[], options: CliOptions = {}) {
  const child = spawnCli(args, options)
  child.stdin!.end()
  const output = { stdout: '', stderr: '' }
  child.stdout!.on('data', (d) => (output.stdout += d))
  child.stderr!.on('data', (d) => (output.stderr += d))
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return { child, output, exited }
}

/** Starts the built CLI (`bin/run.js`) as a subprocess. */
export function spawnCli(args: string[], options: CliOptions = {}): ChildProcess {
  const home = options.home ?? cliHome()
  const env: Record<string, string | undefined> = { ...process.env, ...home.env, ...options.env }
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key]
  return spawn(process.execPath, [options.cli ?? cliPath, ...args], {
    cwd: options.cwd ?? repoRoot,
    env: env as NodeJS.ProcessEnv,
    stdio: [options.stdin ?? 'pipe', 'pipe', 'pipe'],
  })
}

/** The spare workers a home's connection agent keeps ready (their sockets in the agent's folder). */
export function spareSockets(home: CliHome): string[] {
  try {
    return readdirSync(join(home.env.XDG_RUNTIME_DIR, 'crabbox')).filter((name) => /^spare-\d+\.sock$/.test(name))
  } catch {
    return []
  }
}

/** Stderr without the `CRABBOX_TRACE_START=1` lines, to compare what two paths printed. */
export const withoutTrace = (stderr: string) => stderr.replace(/^start-up: .*\n/gm, '')

/** Runs the built CLI until its first output, then closes its stdout as `head -1` would: resolves with its exit code. */
export async function exitAfterStdoutCloses(args: string[], options: CliOptions = {}): Promise<number | null> {
  const child = spawnCli(args, options)
  child.stdin!.end()
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()))
  child.stdout!.destroy()
  return exited
}

/** Runs the built CLI to completion and collects its output. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const child = spawnCli(args, options)
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdin?.end(options.input ?? '')
  const timeout = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
  return new Promise((resolvePromise, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timeout)
      resolvePromise({ code, signal, stdout, stderr })
    })
  })
}
