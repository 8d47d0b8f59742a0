import { spawn, spawnSync } from 'node:child_process'
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { repoRoot } from '../test/support/cli.js'

/**
 * Start-up is part of what the CLI benches measure, so they run the build users get
 * (dist, bundle, oclif manifest) from a private snapshot: concurrent rebuilds of the
 * shared dist/ must not change it under a running benchmark.
 */
export function cliSnapshot(name: string, command: string): { scratch: string; cli: string } {
  const scratch = mkdtempSync(join(tmpdir(), `crabbox-bench-${name}-`))
  const snapshot = join(scratch, 'crabbox')
  mkdirSync(snapshot)
  for (const entry of ['bin', 'package.json']) cpSync(join(repoRoot, entry), join(snapshot, entry), { recursive: true })
  symlinkSync(join(repoRoot, 'node_modules'), join(snapshot, 'node_modules'))
  process.stderr.write('building a snapshot (npm run build: tsc, bundle, oclif manifest) ...\n')
  const build = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'build.js'), '--root', snapshot, '--ignore-type-errors'], {
    cwd: repoRoot,
    stdio: 'ignore',
  })
  if (!existsSync(join(snapshot, 'dist', 'commands', `${command}.js`)) || build.status !== 0) {
    process.stderr.write('could not build the CLI snapshot\n')
    process.exit(1)
  }
  return { scratch, cli: join(snapshot, 'bin', 'run.js') }
}

/**
 * Runs a child asynchronously (a bench's proxy lives in its own process, so a *Sync
 * child would stall it); resolves with its stdout when `capture`, rejects on a non-zero exit.
 */
export function runChild(args: string[], env: NodeJS.ProcessEnv, cwd: string, capture = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(args[0], args.slice(1), { env, cwd, stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'] })
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')} exited ${code}`))))
  })
}

/** Quotes argv for a POSIX shell (for commands handed to `ssh host <command>`). */
export const shellQuote = (args: string[]) => args.map((a) => (/^[\w@%+=:,./~-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')

export interface Timed {
  args: string[]
  env?: NodeJS.ProcessEnv
  cwd?: string
}

/**
 * Wall time of each command, run in turns (a, b, c, a, b, c …) so a load that comes and goes
 * hits every command alike and the ratios between them stay fair; `warmup` turns are not
 * counted. Children start asynchronously (a proxy in this process keeps running) with
 * stdin from /dev/null, stdout discarded, stderr kept in a file; a non-zero exit stops the bench
 * with that command's stderr.
 * Returns the median in ms of each command.
 */
export async function measure(
  commands: Record<string, Timed>,
  options: { runs: number; warmup?: number; env: NodeJS.ProcessEnv; cwd: string },
): Promise<Record<string, number>> {
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(commands).map((name) => [name, []]))
  // Each command's stderr goes to a file (as cheap for it as /dev/null): a failure shows why.
  const stderrFile = join(tmpdir(), `crabbox-bench-stderr-${process.pid}`)
  const once = (name: string, command: Timed) =>
    new Promise<number>((resolve, reject) => {
      const stderr = openSync(stderrFile, 'w')
      const start = performance.now()
      const child = spawn(command.args[0], command.args.slice(1), {
        env: command.env ?? options.env,
        cwd: command.cwd ?? options.cwd,
        stdio: ['ignore', 'ignore', stderr],
      })
      closeSync(stderr)
      child.on('error', reject)
      child.on('close', (code) =>
        code === 0
          ? resolve(performance.now() - start)
          : reject(new Error(`${name}: ${command.args.join(' ')} exited ${code}:\n${readFileSync(stderrFile, 'utf8')}`)),
      )
    })
  const warmup = options.warmup ?? 2
  for (let turn = 0; turn < warmup + options.runs; turn++) {
    for (const [name, command] of Object.entries(commands)) {
      const ms = await once(name, command)
      if (turn >= warmup) times[name].push(ms)
    }
  }
  rmSync(stderrFile, { force: true })
  return Object.fromEntries(Object.entries(times).map(([name, list]) => [name, median(list)]))
}

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

/**
 * `--hog`: a busy loop pinned to the second core (taskset), the "under load" condition of
 * the start-up benches. Returns a stop function.
 */
export function cpuHog(): () => void {
  const hog = spawn('taskset', ['-c', '1', process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' })
  hog.on('error', () => {})
  return () => void hog.kill('SIGKILL')
}

/** Load average as the benches print it. */
export const loadAverage = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')

/** The pause before each command of a trace. */
const QUIET_MS = 400

/**
 * `--trace N` of the start-up benches: each command run with CRABBOX_TRACE_START=1, in turns, two
 * warm-up turns then `runs`; prints the median of each `start-up: <phase> <ms>` line per command
 * and its wall time. A run that fell back to another path adds that path's lines.
 */
export async function traceProfile(
  commands: Record<string, Timed>,
  options: { runs: number; rtt: number; env: NodeJS.ProcessEnv; cwd: string },
): Promise<void> {
  const phases: Record<string, Record<string, number[]>> = {}
  for (let turn = 0; turn < options.runs + 2; turn++) {
    for (const [name, command] of Object.entries(commands)) {
      // As between a user's commands: whatever the last one left behind (the agent starting a
      // spare in its place) has finished, and does not land in this one's phases.
      await new Promise((resolve) => setTimeout(resolve, QUIET_MS))
      const start = performance.now()
      const stderr = await new Promise<string>((resolve) => {
        const child = spawn(command.args[0], command.args.slice(1), {
          env: { ...(command.env ?? options.env), CRABBOX_TRACE_START: '1' },
          cwd: command.cwd ?? options.cwd,
          stdio: ['ignore', 'ignore', 'pipe'],
        })
        let text = ''
        child.stderr.setEncoding('utf8').on('data', (d: string) => (text += d))
        child.on('close', () => resolve(text))
      })
      const end = performance.now()
      if (turn < 2) continue // warm-up
      const own = (phases[name] ??= {})
      const add = (phase: string, ms: number) => (own[phase] ??= []).push(ms)
      // The thin client's time origin (wall clock): Node's exec before it, and its exit after the last mark.
      const origin = /^start-up: thin client: time origin ([\d.]+) /m.exec(stderr)
      if (origin) add('node: from spawn to its time origin', Number(origin[1]) - (performance.timeOrigin + start))
      for (const [, phase, ms] of stderr.matchAll(/^start-up: (.+?) ([\d.]+) ms/gm)) add(phase, Number(ms))
      const lastAt = [...stderr.matchAll(/^start-up: thin client: .+ \(at ([\d.]+) ms\)$/gm)].at(-1)
      if (origin && lastAt)
        add('exit: from the last mark until the bench sees it', performance.timeOrigin + end - (Number(origin[1]) + Number(lastAt[1])))
      add('wall', end - start)
    }
  }
  for (const [name, own] of Object.entries(phases)) {
    process.stdout.write(`\n${name} (medians of ${options.runs} runs at ${options.rtt} ms RTT, load ${loadAverage()}):\n`)
    for (const [phase, values] of Object.entries(own)) process.stdout.write(`| ${phase} | ${median(values).toFixed(1)} ms |\n`)
  }
}
