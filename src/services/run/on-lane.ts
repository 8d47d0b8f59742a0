import type { Writable } from 'node:stream'
import type { Config } from '../../config/schema.js'
import { stateDir } from '../../paths.js'
import type { LaneCall, LaneDeclined, RunFacts, SyncFacts } from '../../transport/ssh/agent-lane.js'
import { exitCodeOf } from '../../transport/ssh/exec.js'
import { outputSink } from '../../transport/ssh/streams.js'
import type { ExecResult } from '../../transport/ssh/types.js'
import { writeJobSummary } from '../../ui/ci.js'
import { NOTHING_TO_SYNC, runningOnLine, summaryLine, syncingLine } from '../../ui/format.js'
import { createProgress } from '../../ui/progress.js'
import { runIfUnchanged } from '../sync/guard.js'
import { watchedUnchanged } from '../sync/snapshot.js'
import type { SyncPhase } from '../sync/timer.js'
import { interruptGroup, remoteCommandFor, runPidFile } from './remote-command.js'
import { stopwatch, type RunTiming } from './timing.js'

/**
 * A `run --id X [--no-sync] -- <cmd>` on the agent lane (src/transport/ssh/agent-lane.ts): what
 * the run pipeline does for such a run, from the facts its spare worker filed. A route is filed
 * only where nothing else of the pipeline applies (src/services/lane.ts: a static host of
 * provider `ssh`, no broker to record on, no JUnit, no hydrated job, no tailnet to probe), so what
 * is left is the pipeline's own lines and its runner command: the same `running on` line, the
 * process-group runner with its pid file, the out-of-band Ctrl-C, the exit code (130 after a
 * signal, 141 after a closed stdout), the summary line and the CI job summary.
 *
 * A run that syncs runs here only when nothing is to sync: the agent's watcher vouches that the
 * checkout did not change since its last snapshot, and the runner's fingerprint guard (one exec,
 * sync/guard.ts) says `ok` before the command starts. Anything else declines before it began,
 * and the spare worker syncs and runs it.
 */
export async function runOnLane(call: LaneCall): Promise<number | LaneDeclined> {
  const facts = call.route.run
  if (!facts) throw new Error('not a run route')
  return facts.sync ? runUnchanged(call, facts, facts.sync) : runNoSync(call, facts)
}

async function runNoSync(call: LaneCall, facts: RunFacts): Promise<number> {
  const { route, fast, stderr } = call
  call.begin()
  const total = stopwatch()
  const quiet = fast.flags.quiet === true
  const pidFile = runPidFile(facts.leaseId)
  if (!quiet) stderr.write(`${runningOnLine({ slug: facts.slug, ssh: { host: route.target.host } }, fast.words)}\n`)
  const clock = stopwatch()
  const stdout = droppedOnStop(call)
  const command = route.prefix + remoteCommandFor(fast.words, { shell: fast.flags.shell === true, pidFile }).command
  const ran = whileRunning(call, pidFile, call.exec(command, { env: facts.env, signal: call.stop, stdout, stderr }))
  const result = await ran
  if (result === 'again') return interruptedCode(call)
  await new Promise<void>((resolve) => stdout.end(resolve))
  return reported(call, facts, { result, commandMs: clock(), totalMs: total(), syncMs: 0, syncPhases: [] })
}

/** The run pipeline's sync step for a checkout its warm run finds unchanged (services/run/steps/sync.ts). */
async function runUnchanged(call: LaneCall, facts: RunFacts, sync: SyncFacts): Promise<number | LaneDeclined> {
  const { fast, env } = call
  // Its snapshot and caches are the ones under the command's state folder; its lines carry its local time.
  if (sync.stateDir !== stateDir() || (env.TZ ?? '') !== (process.env.TZ ?? '')) return { declined: 'another state folder or time zone' }
  const total = stopwatch()
  const config = sync.config as Config['sync']
  // Held until the command begins (LaneCall.begin): a declined run printed nothing.
  const progress = createProgress({ stream: call.stderr as NodeJS.WriteStream, env, quiet: fast.flags.quiet === true, plain: true })
  progress.phase(syncingLine(sync.repoRoot, facts.slug, env.HOME))
  const startedAt = performance.now()
  const unchanged = await watchedUnchanged(sync.repoRoot, config, call.watch, env)
  if (!unchanged) return { declined: 'the checkout may have changed since its last sync' }
  const pidFile = runPidFile(facts.leaseId)
  const stdout = droppedOnStop(call)
  const warm = runIfUnchanged({
    repoRoot: sync.repoRoot,
    workdir: sync.workdir,
    config,
    session: { exec: call.exec },
    check: { unchanged: Promise.resolve(unchanged) },
    startedAt,
    run: {
      command: remoteCommandFor(fast.words, { shell: fast.flags.shell === true, pidFile }).command,
      env: facts.env,
      signal: call.stop,
      onStdout: (chunk) => void stdout.write(chunk),
      onStderr: (chunk) => void call.stderr.write(chunk),
      onStart: () => {
        call.begin()
        progress.done(NOTHING_TO_SYNC)
        progress.detail(runningOnLine({ slug: facts.slug, ssh: { host: call.route.target.host } }, fast.words))
      },
    },
  })
  const outcome = await whileRunning(call, pidFile, warm)
  if (outcome === 'again') return interruptedCode(call)
  // The runner holds something else: nothing ran, the spare worker syncs first.
  if (!outcome || !('ran' in outcome)) return { declined: 'the runner holds another fingerprint' }
  await new Promise<void>((resolve) => stdout.end(resolve))
  const { result, ms } = outcome.ran
  return reported(call, facts, { result, commandMs: ms, totalMs: total(), syncMs: outcome.syncMs, syncPhases: outcome.phases })
}

/** The command's stdout, dropped once the client stopped it, as the pipeline's output sink does. */
const droppedOnStop = (call: LaneCall): Writable => outputSink(call.stdout, () => call.stop.aborted)

/**
 * `work` with the out-of-band Ctrl-C armed (only while the command may run: the client hanging up
 * after its exit code must signal nothing); `again` when a second signal ends the run at once, as
 * the CLI exits on its second Ctrl-C.
 */
async function whileRunning<T>(call: LaneCall, pidFile: string, work: Promise<T>): Promise<T | 'again'> {
  const outOfBand = () => interruptGroup((command) => call.exec(command, {}), pidFile)
  call.stop.addEventListener('abort', outOfBand, { once: true })
  work.catch(() => {}) // still running when a second signal ends the run: its failure is nobody's
  const secondSignal = new Promise<'again'>((resolve) => call.again.addEventListener('abort', () => resolve('again'), { once: true }))
  return Promise.race([work, secondSignal]).finally(() => call.stop.removeEventListener('abort', outOfBand))
}

const interrupted = (call: LaneCall) =>
  call.stop.aborted ? (call.closed.has('stdout') ? ('closed pipe' as const) : ('signal' as const)) : undefined
const interruptedCode = (call: LaneCall) => (interrupted(call) === 'closed pipe' ? 141 : 130)

/** The summary line and the CI job summary, as the pipeline reports a run; resolves with its exit code. */
function reported(
  call: LaneCall,
  facts: RunFacts,
  run: { result: ExecResult; commandMs: number; totalMs: number; syncMs: number; syncPhases: SyncPhase[] },
): number {
  const stopped = interrupted(call)
  const timing: RunTiming = {
    provider: facts.provider,
    leaseId: facts.leaseId,
    slug: facts.slug,
    syncMs: run.syncMs,
    syncPhases: run.syncPhases,
    syncSkipped: true,
    commandMs: run.commandMs,
    totalMs: run.totalMs,
    exitCode: stopped ? interruptedCode(call) : exitCodeOf(run.result),
    ...(stopped && { interrupted: stopped }),
  }
  if (call.fast.flags.quiet !== true) call.stderr.write(`${summaryLine(timing)}\n`)
  writeJobSummary(timing, call.env)
  return timing.exitCode
}
