import type { LaneCall } from '../../transport/ssh/agent-lane.js'
import { outputSink } from '../../transport/ssh/streams.js'
import { writeJobSummary } from '../../ui/ci.js'
import { runningOnLine, summaryLine } from '../../ui/format.js'
import { interruptGroup, remoteCommandFor, runPidFile } from './remote-command.js'
import { exitCodeOf } from './steps/command.js'
import { stopwatch, type RunTiming } from './timing.js'

/**
 * A `run --id X --no-sync -- <cmd>` on the agent lane (src/transport/ssh/agent-lane.ts): what
 * the run pipeline does for such a run, from the facts its spare worker filed. A route is filed
 * only where nothing else of the pipeline applies (src/services/lane.ts: a static host of
 * provider `ssh`, no broker to record on, no JUnit, no hydrated job, no tailnet to probe), so what
 * is left is the pipeline's own lines and its runner command: the same `running on` line, the
 * process-group runner with its pid file, the out-of-band Ctrl-C, the exit code (130 after a
 * signal, 141 after a closed stdout), the summary line and the CI job summary.
 */
export async function runOnLane(call: LaneCall): Promise<number> {
  const { route, fast, stop, again, stderr } = call
  if (!route.run) throw new Error('not a run route')
  const { env, leaseId, slug, provider } = route.run
  const total = stopwatch()
  const quiet = fast.flags.quiet === true
  const argv = fast.words
  const pidFile = runPidFile(leaseId)
  // Only while the command runs: the client hanging up after its exit code must signal nothing.
  const outOfBand = () => interruptGroup((command) => call.exec(command, {}), pidFile)
  stop.addEventListener('abort', outOfBand, { once: true })
  if (!quiet) stderr.write(`${runningOnLine({ slug, ssh: { host: route.target.host } }, argv)}\n`)
  const clock = stopwatch()
  // Once stopped, the command's stdout is dropped, as the pipeline's output sink does.
  const stdout = outputSink(call.stdout, () => stop.aborted)
  const command = route.prefix + remoteCommandFor(argv, { shell: fast.flags.shell === true, pidFile }).command
  const ran = call.exec(command, { env, signal: stop, stdout, stderr })
  ran.catch(() => {}) // still running when a second signal ends the run: its failure is nobody's
  // A second signal ends the run at once, as the CLI exits on its second Ctrl-C.
  const secondSignal = new Promise<'again'>((resolve) => again.addEventListener('abort', () => resolve('again'), { once: true }))
  const result = await Promise.race([ran, secondSignal]).finally(() => stop.removeEventListener('abort', outOfBand))
  const interrupted = stop.aborted ? (call.closed.has('stdout') ? ('closed pipe' as const) : ('signal' as const)) : undefined
  const interruptedCode = interrupted === 'closed pipe' ? 141 : 130
  if (result === 'again') return interruptedCode
  await new Promise<void>((resolve) => stdout.end(resolve))
  const timing: RunTiming = {
    provider,
    leaseId,
    slug,
    syncMs: 0,
    syncPhases: [],
    syncSkipped: true,
    commandMs: clock(),
    totalMs: total(),
    exitCode: interrupted ? interruptedCode : exitCodeOf(result.code, result.signal),
    ...(interrupted && { interrupted }),
  }
  if (!quiet) stderr.write(`${summaryLine(timing)}\n`)
  writeJobSummary(timing, call.env)
  return timing.exitCode
}
