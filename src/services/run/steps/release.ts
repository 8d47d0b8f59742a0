import { closeQuietly, releaseQuietly } from '../lifecycle.js'
import type { RunPlan, RunState } from './plan.js'

/**
 * Always last, whatever happened: heartbeats stop, the connection closes, a
 * lease this run acquired is released unless kept, queued events reach the
 * broker, and the signal handlers go.
 */
export async function releaseStep(plan: RunPlan, state: RunState): Promise<void> {
  const { backend, recorder, flags } = plan
  const { progress } = plan.context
  const held = state.held
  state.heartbeat.stop()
  state.telemetry.stop()
  await closeQuietly(state.session)
  if (held?.acquired && !flags.keep) await releaseQuietly(backend, held.lease, progress, recorder)
  else if (held?.acquired)
    // Short enough for one line: `crabbox stop <slug>` ends it.
    progress.info(`kept ${held.lease.id} (${held.lease.slug}): reuse it with --id ${held.lease.slug}`)
  await recorder.settle()
  plan.interrupt.dispose()
}
