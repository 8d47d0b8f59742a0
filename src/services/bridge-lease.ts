import { CrabboxError } from '../errors.js'
import type { Lease } from '../providers/types.js'
import type { BrokerClient } from '../transport/broker/client.js'
import type { ServiceContext } from './context.js'

/**
 * The lease of a bridge that relays through the broker (WebVNC, code), reached over the
 * network the lease is on. Direct mode has no relay, so it is refused with `needs` as the
 * message and `hint` as the way on. `check` sees the broker's record before anything dials it.
 */
export async function brokerBridgeLease(
  context: ServiceContext,
  id: string,
  needs: { message: string; hint: string },
  check: (lease: Lease) => void = () => undefined,
): Promise<{ lease: Lease; broker: BrokerClient }> {
  const { leaseBackend } = await import('./lease.js')
  const backend = await leaseBackend({ config: context.config, progress: context.progress })
  if (backend.mode !== 'broker' || !backend.broker)
    throw new CrabboxError(needs.message, { exit: 'usage', code: 'broker_required', hint: needs.hint })
  const resolved = await backend.resolve(id)
  check(resolved)
  const { reachLease } = await import('./network.js')
  return { lease: await reachLease(resolved, context, { broker: backend.broker }), broker: backend.broker }
}
