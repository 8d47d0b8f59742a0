import { isDelegatedProvider } from '../providers/registry.js'
import { LeaseListResponse, LIVE_LEASE_STATES, PoolResponse, type LeaseRecord, type ProviderMachine } from '../protocol/leases.js'
import { BrokerError, brokerClient, type BrokerClient } from '../transport/broker/client.js'
import type { ServiceContext } from './context.js'

/** Why a machine counts as an orphan: it carries no lease label, or its lease is not live. */
export type OrphanReason = 'missing-lease-label' | 'no-active-lease'

/** One machine of `list` with the admin token: the provider's record, its live lease if any, or why it is an orphan. */
export interface PoolMachineView extends ProviderMachine {
  lease?: string
  slug?: string
  owner?: string
  orphan?: OrphanReason
}

/** The broker's providers by the names `--provider` and config use. */
const BROKER_PROVIDERS: Record<string, string> = { ssh: 'static', static: 'static', hetzner: 'hetzner', aws: 'aws', azure: 'azure' }

/**
 * Pairs each machine with its live lease. A machine with no `lease` label is an orphan
 * (`missing-lease-label`), except a free static pool host (a pool entry nobody holds);
 * one whose lease is not provisioning or active is an orphan too (`no-active-lease`).
 */
export function markOrphans(machines: readonly ProviderMachine[], live: readonly LeaseRecord[]): PoolMachineView[] {
  const byId = new Map(live.map((lease) => [lease.id, lease]))
  return machines.map((machine) => {
    const leaseId = machine.labels.lease
    if (!leaseId) {
      const freeStatic = machine.provider === 'static' && machine.status === 'free'
      return freeStatic ? { ...machine } : { ...machine, orphan: 'missing-lease-label' }
    }
    const lease = byId.get(leaseId)
    if (!lease) return { ...machine, lease: leaseId, orphan: 'no-active-lease' }
    return { ...machine, lease: leaseId, slug: lease.slug, owner: lease.owner }
  })
}

/** Every live lease of every owner (admin), page by page. */
async function liveLeases(client: BrokerClient): Promise<LeaseRecord[]> {
  const leases: LeaseRecord[] = []
  for (const state of LIVE_LEASE_STATES) {
    let cursor: string | undefined
    do {
      const page = await client.request('GET', '/v1/admin/leases', {
        admin: true,
        query: { state, limit: 500, cursor },
        schema: LeaseListResponse,
        timeoutMs: 30_000,
      })
      leases.push(...page.leases)
      cursor = page.nextCursor
    } while (cursor)
  }
  return leases
}

/**
 * `list` with a broker and the admin token: the machines the providers report
 * (`GET /v1/pool`, `--provider` narrows it) against every live lease, orphans marked.
 * Undefined when there is no broker or admin token, the provider is `local`, or the
 * broker refused the token (a warning; `list` then shows the caller's leases).
 */
export async function listPool(context: ServiceContext): Promise<PoolMachineView[] | undefined> {
  const { config } = context
  const client = brokerClient(config)
  // A delegated provider's machines are not the broker's: its own list answers (and syncs runners).
  if (!client || !config.broker.adminToken || config.provider === 'local' || isDelegatedProvider(config.provider)) return undefined
  const provider = BROKER_PROVIDERS[config.provider]
  try {
    const { machines } = await client.request('GET', '/v1/pool', {
      admin: true,
      query: { provider },
      schema: PoolResponse,
      timeoutMs: 60_000,
    })
    return markOrphans(machines, await liveLeases(client))
  } catch (error) {
    if (!(error instanceof BrokerError && (error.status === 401 || error.status === 403))) throw error
    context.progress.warn(`the broker refused the admin token (${error.message}); listing your own leases`)
    return undefined
  }
}
