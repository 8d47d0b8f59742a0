import { directProvider } from '../../../providers/registry.js'
import { startDirectTouch, startHeartbeat } from '../../heartbeat.js'
import { obtainLease, type LeaseInHand } from '../lifecycle.js'
import type { RunPlan, RunState } from './plan.js'

/**
 * A ready lease (`--id` reused as is, else acquired, with one bootstrap retry
 * for a fresh non-kept lease). It is beaten from the moment it exists, while
 * the runner boots; a replaced runner's beat stops.
 */
export async function leaseStep(plan: RunPlan, state: RunState): Promise<LeaseInHand> {
  const { backend, flags, context } = plan
  const broker = backend.broker
  return obtainLease(backend, {
    id: flags.id,
    keep: flags.keep,
    signal: plan.interrupt.signal,
    progress: context.progress,
    recorder: plan.recorder,
    readyTimeoutMs: flags.bootstrapTimeoutMs,
    network: context.config.network,
    onLease: broker
      ? async (lease) => {
          // The control channel (WebSocket client) is ~100 ms to load: only broker runs need it.
          state.heartbeat.stop()
          // Beats carry the latest runner telemetry once the session samples it.
          state.heartbeat = startHeartbeat(broker, lease, plan.notice, () => state.telemetry.latest())
          if ('begin' in plan.recorder) await plan.recorder.begin(lease)
        }
      : async (lease) => {
          // Direct cloud leases: refresh the expiry labels on the same cadence.
          state.heartbeat.stop()
          state.heartbeat = startDirectTouch(await directProvider(lease.provider), lease, context)
        },
  })
}
