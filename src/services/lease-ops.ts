import { closest } from '../ui/suggest.js'
import { CrabboxError, usageError } from '../errors.js'
import type { Lease } from '../providers/types.js'
import { openSession } from '../transport/ssh/index.js'
import { leaseHeartbeat, noHeartbeat } from './heartbeat.js'
import { forgetLeaseKey, leaseBackend, type LeaseBackend, type LeaseContext } from './lease.js'
import { WhoamiResponse, type LeaseRecord } from '../protocol/leases.js'
import { interruptOnSignals, obtainLease } from './run/lifecycle.js'
import { nullRecorder } from './run/recorder.js'
import { networkOf, reachLease } from './network.js'
import { statusView, type StatusView } from './status-view.js'
import { claimingBackend, forgetClaim, reclaimedWarning } from './claims.js'
import { syncExternalRunners } from './runner-sync.js'
import { canonicalProvider } from '../providers/registry.js'

export type { StatusView } from './status-view.js'

/** What `warmup` and `list` show of a lease (`status` and `inspect` show a `StatusView`). */
export interface LeaseView {
  id: string
  slug: string
  provider: string
  state: string
  host: string
  port: number
  user: string
  workRoot: string
  keep: boolean
  expiresAt?: string
  idleTimeoutSeconds?: number
  /** How the runner is reached (`tailscale` or `public`) and why (services/network.ts); set once a choice was made. */
  network?: string
  networkReason?: string
}

const leaseView = (lease: Lease): LeaseView => ({
  id: lease.id,
  slug: lease.slug,
  provider: lease.provider,
  state: lease.state,
  host: lease.ssh.host,
  port: lease.ssh.port,
  user: lease.ssh.user,
  workRoot: lease.workRoot,
  keep: lease.keep,
  ...(lease.expiresAt ? { expiresAt: lease.expiresAt } : {}),
  ...(lease.idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds: lease.idleTimeoutSeconds } : {}),
  ...(networkOf(lease) ? { network: networkOf(lease)!.network, networkReason: networkOf(lease)!.reason } : {}),
})

export const requireId = (id: string | undefined): string => {
  if (!id) throw usageError('which lease?', 'pass a lease ID or slug (`crabbox list` shows them)')
  return id
}

/**
 * `warmup`: a ready lease that outlives this command (kept unless `keep` is false),
 * claimed for the checkout in `repoRoot` (`reclaim` takes an existing host over).
 */
export async function warmupLease(
  context: LeaseContext,
  options: { keep: boolean; repoRoot: string; reclaim: boolean },
): Promise<LeaseView> {
  const backend = claimingBackend(await leaseBackend(context), {
    ...options,
    onReclaim: (from, lease) => context.progress.warn(reclaimedWarning(lease, from)),
  })
  const interrupt = interruptOnSignals()
  let heartbeat = noHeartbeat
  // Heartbeats from the moment the lease exists, while the runner boots.
  const acquire: LeaseBackend['acquire'] = async (request) => {
    const lease = await backend.acquire(request)
    heartbeat.stop() // a replaced runner (first one never came up) stops beating
    heartbeat = leaseHeartbeat(backend.broker, lease, context.progress)
    return lease
  }
  try {
    const { lease } = await obtainLease(
      { ...backend, acquire },
      { keep: options.keep, signal: interrupt.signal, progress: context.progress, recorder: nullRecorder, network: context.config.network },
    )
    return leaseView(lease)
  } finally {
    heartbeat.stop()
    interrupt.dispose()
  }
}

export interface StopResult {
  id: string
  slug?: string
  released: boolean
  /** True when there was nothing left to release (already stopped or expired). */
  alreadyGone: boolean
}

/**
 * `stop`: releases a lease. Stopping one known to be released or expired succeeds
 * and says so; a name crabbox never knew is exit 4, with the closest live slug.
 */
export async function stopLease(idOrSlug: string, context: LeaseContext): Promise<StopResult> {
  const backend = await leaseBackend(context)
  let lease: Lease
  try {
    lease = await backend.resolve(idOrSlug)
  } catch (error) {
    if (!(error instanceof CrabboxError && error.exitCode === 4 && error.code !== 'ambiguous')) throw error
    const gone = await backend.findGone(idOrSlug)
    if (gone) {
      forgetClaim(gone.id)
      return { id: gone.id, slug: gone.slug, released: false, alreadyGone: true }
    }
    throw noLeaseNamed(idOrSlug, await backend.list().catch(() => []))
  }
  if (lease.state !== 'active' && lease.state !== 'provisioning') {
    await forgetLeaseKey(lease.id)
    return { id: lease.id, slug: lease.slug, released: false, alreadyGone: true }
  }
  await beforeRelease(lease, context)
  await backend.release(lease)
  return { id: lease.id, slug: lease.slug, released: true, alreadyGone: false }
}

/** A hydrated lease's Actions job ends first (no runner left registered); `cache.purgeOnRelease` empties its caches. */
async function beforeRelease(lease: Lease, context: LeaseContext): Promise<void> {
  const { endHydration } = await import('./actions/end.js')
  await endHydration(lease, context)
  const { purgeBeforeRelease } = await import('./cache/index.js')
  await purgeBeforeRelease(lease, context)
}

function noLeaseNamed(idOrSlug: string, live: Lease[]): CrabboxError {
  const nearest = closestSlug(
    idOrSlug,
    live.map((l) => l.slug),
  )
  return new CrabboxError(`no lease named ${idOrSlug}`, {
    exit: 'notFound',
    code: 'not_found',
    hint: nearest ? `did you mean ${nearest}? (\`crabbox list\` shows live leases)` : 'run `crabbox list` to see live leases',
  })
}

/** The live slug nearest to what was typed (at most 2 edits, or a third of its length). */
export const closestSlug = (typed: string, slugs: string[]): string | undefined =>
  closest(typed, new Set(slugs), Math.max(2, Math.floor(typed.length / 3)))

/**
 * `stop --all`: releases every active lease of the caller (kept ones too). Through a broker
 * that is the leases the caller owns, not those shared with them or, for an admin, everyone's.
 */
export async function stopAllLeases(context: LeaseContext): Promise<StopResult[]> {
  const backend = await leaseBackend(context)
  let leases = await backend.list()
  if (backend.broker) {
    const me = await backend.broker.request('GET', '/v1/whoami', { schema: WhoamiResponse, timeoutMs: 30_000 })
    leases = leases.filter((lease) => {
      const record = lease.details.record as LeaseRecord | undefined
      return record?.owner === me.owner && record.org === me.org
    })
  }
  return Promise.all(
    leases.map(async (lease) => {
      await beforeRelease(lease, context)
      await backend.release(lease)
      return { id: lease.id, slug: lease.slug, released: true, alreadyGone: false }
    }),
  )
}

/** One SSH round trip: can we run `true` there now? */
async function probe(lease: Lease): Promise<boolean> {
  try {
    const session = await openSession(lease.ssh, { connectTimeoutMs: 4000 })
    try {
      const result = await session.exec('true', { signal: AbortSignal.timeout(4000) })
      return result.code === 0
    } finally {
      await session.close()
    }
  } catch {
    return false
  }
}

/** `status`: the lease and whether its runner answers; `wait` polls until it does. */
export async function leaseStatus(
  idOrSlug: string,
  context: LeaseContext,
  options: { wait: boolean; timeoutMs: number },
): Promise<StatusView> {
  const backend = await leaseBackend(context)
  const deadline = Date.now() + options.timeoutMs
  for (;;) {
    const lease = await reachLease(await backend.resolve(idOrSlug), context, { broker: backend.broker })
    const ready = lease.state === 'active' && (await probe(lease))
    if (ready || !options.wait) return statusView(lease, { ready, target: context.config.target })
    if (Date.now() > deadline)
      throw new CrabboxError(`lease ${lease.id} is not ready after ${Math.round(options.timeoutMs / 1000)}s`, { exit: 'provisioning' })
    context.progress.phase(`waiting for ${lease.slug} to be ready`)
    await new Promise((r) => setTimeout(r, 2000))
  }
}

/** `inspect`: the same view as `status` (one probe, no waiting). */
export async function inspectLease(idOrSlug: string, context: LeaseContext): Promise<StatusView> {
  const backend = await leaseBackend(context)
  const lease = await reachLease(await backend.resolve(idOrSlug), context, { broker: backend.broker })
  const ready = lease.state === 'active' && (await probe(lease))
  return statusView(lease, { ready, target: context.config.target })
}

/** `list`: active leases of the broker, or of this machine in direct mode. */
export async function listLeases(context: LeaseContext, options: { syncRunners?: boolean } = {}): Promise<LeaseView[]> {
  const leases = await (await leaseBackend(context)).list()
  // A delegated provider's rows go to the broker as external runners (services/runner-sync.ts).
  if (options.syncRunners) await syncExternalRunners(context, canonicalProvider(context.config.provider), leases)
  return leases.map(leaseView)
}
