import type { Lease } from '../../../providers/types.js'
import { CrabboxError } from '../../../errors.js'
import { drained } from '../output.js'
import { networkOf } from '../../network.js'
import type { RunTiming } from '../timing.js'
import type { RunPlan, RunState } from './plan.js'
import { collectJunit, junitPatterns } from './results.js'
import { workdirFor } from './session.js'
import { readHydration } from '../../actions/record.js'

/**
 * Finishes the run record once everything the command printed reached our
 * streams and the recorder; an interrupt is recorded as such. Resolves with
 * the timing (`--timing-json`).
 */
export async function recordStep(plan: RunPlan, state: RunState, lease: Lease, commandExit: number): Promise<RunTiming> {
  const { recorder, interrupt, flags } = plan
  let exitCode = commandExit
  await Promise.all(state.sinks.splice(0).map(drained))
  const interrupted = interrupt.signal.aborted
  if (interrupted) {
    recorder.event({ type: 'run.failed', phase: 'failed', message: 'interrupted' })
    exitCode = interrupt.exitCode()
  }
  // JUnit results after the command (not after --sync-only or an interrupt); any problem is a warning.
  const patterns = junitPatterns(plan.context.config.results.junit)
  const results =
    state.session && patterns.length > 0 && !interrupted && !flags.syncOnly
      ? await collectJunit(
          state.session,
          readHydration(lease.id)?.workspace ?? workdirFor(lease.workRoot, lease.id, plan.repoRoot),
          patterns,
          plan.context.progress,
        )
      : undefined
  state.results = results
  const telemetry = state.telemetry.stop()
  await recorder.finish({ exitCode, syncMs: state.sync.ms, commandMs: state.commandMs, results, telemetry })
  return {
    provider: lease.provider,
    leaseId: lease.id,
    slug: lease.slug,
    ...(recorder.runId ? { runId: recorder.runId } : {}),
    syncMs: state.sync.ms,
    syncPhases: state.sync.phases,
    syncSkipped: flags.noSync || state.sync.skipped,
    commandMs: state.commandMs,
    totalMs: plan.total(),
    exitCode,
    ...networkTiming(lease),
    ...(interrupted ? { interrupted: exitCode === 141 ? ('closed pipe' as const) : ('signal' as const) } : {}),
  }
}

/** The network choice for `--timing-json` (absent when none was made). */
function networkTiming(lease: Lease): Pick<RunTiming, 'network' | 'networkHost' | 'networkReason'> {
  const choice = networkOf(lease)
  return choice ? { network: choice.network, networkHost: choice.host, networkReason: choice.reason } : {}
}

/** A failed run: drained output, a `run.failed` event (`interrupted` after Ctrl-C), the run finished with the error's exit code. */
export async function recordFailure(plan: RunPlan, state: RunState, error: unknown): Promise<void> {
  const { recorder, interrupt } = plan
  const exitCode = error instanceof CrabboxError ? error.exitCode : 1
  await Promise.all(state.sinks.splice(0).map(drained))
  state.telemetry.stop()
  recorder.event({ type: 'run.failed', phase: 'failed', message: interrupt.signal.aborted ? 'interrupted' : (error as Error).message })
  await recorder.finish({ exitCode, syncMs: state.sync.ms, commandMs: state.commandMs })
}
