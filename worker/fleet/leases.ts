import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import {
  LIVE_LEASE_STATES,
  mergeTelemetrySeries,
  sanitizeTelemetry,
  type HeartbeatRequest,
  type LeaseRecord,
  type LeaseShare,
  type ShareDeleteRequest,
  type SharePutRequest,
} from '../../src/protocol/leases.js'
import type { Identity } from '../auth/identity.js'
import type { FleetDeps } from './deps.js'
import { cleanupMachine } from './lease-cleanup.js'
import { closeEgress } from './egress.js'
import {
  clampSeconds,
  computeExpiresAt,
  inflightFor,
  minLeaseSeconds,
  queueCleanup,
  requireManage,
  resolveLease,
  saveRecord,
} from './lease-store.js'
import type { FleetStorage } from './storage.js'

/**
 * What a lease holder does with a lease after creating it (lease-create.ts):
 * heartbeat, release (and delete its machine), share. Reads and the table live
 * in lease-store.ts; expiry and machine deletion in lease-cleanup.ts.
 */

// ---- heartbeat ---------------------------------------------------------------------

/**
 * Touches a live lease: `lastTouchedAt = now`, optional idle timeout, optional
 * telemetry; `expiresAt` recomputed (never past the TTL). A lease that is not
 * active, or whose expiry has passed, answers 409 `lease_not_active` and is
 * never revived. Used by the HTTP route and the control socket.
 */
export async function heartbeatLease(deps: FleetDeps, identity: Identity, ref: string, body: HeartbeatRequest): Promise<LeaseRecord> {
  const { storage } = deps
  const now = deps.now()
  const nowIso = now.toISOString()
  const updated = storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, now)
    if (lease.state !== 'active' || Date.parse(lease.expiresAt) <= now.getTime()) {
      const state = lease.state === 'active' ? 'expired' : lease.state
      throw new ApiError(409, ErrorCode.leaseNotActive, `lease ${lease.id} is ${state}; a heartbeat cannot revive it — create a new lease`)
    }
    const next: LeaseRecord = { ...lease, updatedAt: nowIso, lastTouchedAt: nowIso }
    if (body.idleTimeoutSeconds !== undefined && body.idleTimeoutSeconds > 0)
      next.idleTimeoutSeconds = clampSeconds(body.idleTimeoutSeconds, next.idleTimeoutSeconds, minLeaseSeconds(deps.env))
    const sample = sanitizeTelemetry(body.telemetry, now)
    if (sample) {
      next.telemetry = sample
      next.telemetryHistory = mergeTelemetrySeries(lease.telemetryHistory ?? [], [sample])
    }
    next.expiresAt = computeExpiresAt(next)
    saveRecord(storage, next)
    return next
  })
  await deps.wakeBy(Date.parse(updated.expiresAt))
  return updated
}

// ---- release, delete ------------------------------------------------------------------

/**
 * Marks a lease released and, when asked (default: unless kept), deletes its
 * machine. Safe to repeat: a lease already released answers 200 unchanged.
 * Static hosts are always handed back to the pool.
 */
export async function releaseLease(
  deps: FleetDeps,
  identity: Identity,
  ref: string,
  options: { delete?: boolean; forgetKeep?: boolean } = {},
): Promise<LeaseRecord> {
  const { storage } = deps
  const now = deps.now()
  const nowIso = now.toISOString()
  const { lease, cleanup } = storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, now)
    requireManage(lease, identity)
    const row = storage.one<{ machine: string | null; cleanup_at: number | null }>(
      'SELECT machine, cleanup_at FROM leases WHERE id = ?',
      lease.id,
    )
    // A machine that exists and that nobody is deleting yet (e.g. released with delete:false).
    const keptMachine = row?.machine != null && row.cleanup_at === null
    const queue = () => queueCleanup(storage, lease.id, now.getTime())
    if (lease.state === 'released') {
      // Repeats are no-ops, except an explicit delete of a machine that was kept.
      if (!(options.delete === true && keptMachine)) return { lease, cleanup: false }
      const next: LeaseRecord = { ...lease, updatedAt: nowIso, ...(options.forgetKeep ? { keep: false } : {}) }
      saveRecord(storage, next)
      queue()
      return { lease: next, cleanup: true }
    }
    const deleteMachine = lease.provider === 'static' || (options.delete ?? !lease.keep)
    const wasLive = (LIVE_LEASE_STATES as string[]).includes(lease.state)
    const next: LeaseRecord = {
      ...lease,
      state: 'released',
      updatedAt: nowIso,
      releasedAt: nowIso,
      endedAt: lease.endedAt && !wasLive ? lease.endedAt : nowIso,
    }
    if (options.forgetKeep) next.keep = false
    saveRecord(storage, next)
    // A create still running in this object queues the deletion itself once the machine exists.
    const cleanup = deleteMachine && (wasLive || keptMachine) && !inflightFor(storage).has(lease.id)
    if (cleanup) queue()
    return { lease: next, cleanup }
  })
  if (cleanup) {
    // Without an address the create died with an old instance: only the machine's lease label
    // finds it, which is the alarm's job.
    if (lease.host) await cleanupMachine(deps, lease.id)
    else await deps.wakeBy(now.getTime())
  }
  // A released lease keeps no egress path open.
  if (lease.state === 'released') await closeEgress(deps.env, lease.id).catch((error) => console.error('egress close', error))
  return lease
}

// ---- sharing ------------------------------------------------------------------------

function normalizeShare(share: LeaseShare | undefined): LeaseShare {
  return {
    users: { ...(share?.users ?? {}) },
    ...(share?.org ? { org: share.org } : {}),
    ...(share?.updatedAt ? { updatedAt: share.updatedAt, updatedBy: share.updatedBy } : {}),
  }
}

function writeShare(storage: FleetStorage, lease: LeaseRecord, share: LeaseShare | undefined): LeaseRecord {
  const next: LeaseRecord = { ...lease }
  if (share && (Object.keys(share.users ?? {}).length || share.org)) next.share = share
  else delete next.share
  saveRecord(storage, next)
  storage.run('DELETE FROM lease_shares WHERE lease_id = ?', lease.id)
  for (const [user, role] of Object.entries(next.share?.users ?? {}))
    storage.run('INSERT INTO lease_shares (lease_id, principal, role) VALUES (?, ?, ?)', lease.id, `user:${user}`, role)
  if (next.share?.org)
    storage.run('INSERT INTO lease_shares (lease_id, principal, role) VALUES (?, ?, ?)', lease.id, `org:${lease.org}`, next.share.org)
  return next
}

export function getShare(deps: FleetDeps, identity: Identity, ref: string): { leaseID: string; share: LeaseShare } {
  const lease = resolveLease(deps.storage, identity, ref, deps.now())
  return { leaseID: lease.id, share: normalizeShare(lease.share) }
}

export function putShare(deps: FleetDeps, identity: Identity, ref: string, body: SharePutRequest): { leaseID: string; share: LeaseShare } {
  const { storage } = deps
  return storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, deps.now())
    requireManage(lease, identity)
    const users: Record<string, 'use' | 'manage'> = {}
    for (const [user, role] of Object.entries(body.users ?? {})) {
      const key = user.trim().toLowerCase()
      if (key) users[key] = role
    }
    const share: LeaseShare = {
      users,
      ...(body.org ? { org: body.org } : {}),
      updatedAt: deps.now().toISOString(),
      updatedBy: identity.owner,
    }
    const next = writeShare(storage, lease, share)
    return { leaseID: lease.id, share: normalizeShare(next.share) }
  })
}

export function deleteShare(
  deps: FleetDeps,
  identity: Identity,
  ref: string,
  body: ShareDeleteRequest,
): { leaseID: string; share: LeaseShare } {
  const { storage } = deps
  return storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, deps.now())
    requireManage(lease, identity)
    let share: LeaseShare | undefined
    if (body.user !== undefined || body.org) {
      const users = { ...(lease.share?.users ?? {}) }
      if (body.user !== undefined) delete users[body.user.trim().toLowerCase()]
      share = {
        users,
        ...(lease.share?.org && !body.org ? { org: lease.share.org } : {}),
        updatedAt: deps.now().toISOString(),
        updatedBy: identity.owner,
      }
    }
    const next = writeShare(storage, lease, share)
    return { leaseID: lease.id, share: normalizeShare(next.share) }
  })
}
