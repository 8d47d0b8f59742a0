import type { LeaseState } from '../../src/protocol/leases.js'
import type { FleetDeps } from './deps.js'
import { inflightFor, LIVE_LEASE_SQL, parseRecord, queueCleanup, saveRecord, type LeaseRow, type MachineRef } from './lease-store.js'
import { closeRunsOfEndedLease } from './runs.js'
import type { FleetStorage } from './storage.js'

/**
 * Lease expiry and machine cleanup, driven by the alarm: expired leases queue
 * their machine for deletion; deletions retry with backoff until the provider
 * confirms. Every step is idempotent (alarms are at-least-once).
 */

/** Marks up to `limit` live leases whose expiry has passed as expired and queues their machines for deletion. */
export function expireDueLeases(storage: FleetStorage, now: Date, limit: number): string[] {
  const nowIso = now.toISOString()
  return storage.transaction(() => {
    const due = storage
      .all<{ record: string; claimed: number }>(
        `SELECT record, claimed FROM leases WHERE ${LIVE_LEASE_SQL} AND expires_at <= ? ORDER BY expires_at LIMIT ?`,
        nowIso,
        limit,
      )
      .map(parseRecord)
    const expired: string[] = []
    for (const lease of due) {
      // A provisioning lease is still being created by this object; its create finishes the job.
      if (lease.state === 'provisioning' && inflightFor(storage).has(lease.id)) continue
      saveRecord(storage, { ...lease, state: 'expired' as LeaseState, updatedAt: nowIso, endedAt: nowIso })
      queueCleanup(storage, lease.id, now.getTime())
      closeRunsOfEndedLease(storage, lease.id, 'the lease expired', now)
      expired.push(lease.id)
    }
    return expired
  })
}

/** Backoff between deletion attempts: 10 s, 20 s, 40 s … capped at 15 minutes. */
export const cleanupBackoffMs = (attempts: number): number => Math.min(10_000 * 2 ** Math.max(0, attempts - 1), 15 * 60_000)

/**
 * Deletes one lease's machine through its provider (outside any transaction).
 * Success clears the queue entry; failure schedules a retry with backoff. Idempotent.
 */
export async function cleanupMachine(deps: FleetDeps, leaseId: string): Promise<boolean> {
  const { storage } = deps
  const row = storage.one<LeaseRow>('SELECT * FROM leases WHERE id = ? AND cleanup_at IS NOT NULL', leaseId)
  if (!row) return true
  const machine: MachineRef = row.machine ? (JSON.parse(row.machine) as MachineRef) : { id: '', name: '', labels: {} }
  try {
    await deps.providers.get(row.provider).delete({ ...machine, leaseId })
    // The machine is gone: forget it, so later deletes have nothing to do.
    storage.run('UPDATE leases SET cleanup_at = NULL, cleanup_error = NULL, machine = NULL WHERE id = ?', leaseId)
    return true
  } catch (error) {
    const attempts = row.cleanup_attempts + 1
    storage.run(
      'UPDATE leases SET cleanup_attempts = ?, cleanup_at = ?, cleanup_error = ? WHERE id = ?',
      attempts,
      deps.now().getTime() + cleanupBackoffMs(attempts),
      (error instanceof Error ? error.message : String(error)).slice(0, 500),
      leaseId,
    )
    await deps.wakeBy(deps.now().getTime() + cleanupBackoffMs(attempts))
    return false
  }
}

/** Lease IDs whose machine deletion is due, oldest first. */
export function dueCleanups(storage: FleetStorage, now: number, limit: number): string[] {
  return storage
    .all<{ id: string }>('SELECT id FROM leases WHERE cleanup_at IS NOT NULL AND cleanup_at <= ? ORDER BY cleanup_at LIMIT ?', now, limit)
    .map((r) => r.id)
}

/** Pending deletion state of a lease, for operators and tests. */
export function cleanupState(storage: FleetStorage, leaseId: string): { pending: boolean; attempts: number; error?: string } | undefined {
  const row = storage.one<{ cleanup_at: number | null; cleanup_attempts: number; cleanup_error: string | null }>(
    'SELECT cleanup_at, cleanup_attempts, cleanup_error FROM leases WHERE id = ?',
    leaseId,
  )
  if (!row) return undefined
  return { pending: row.cleanup_at !== null, attempts: row.cleanup_attempts, ...(row.cleanup_error ? { error: row.cleanup_error } : {}) }
}

/** The earliest moment the alarm has lease work: next expiry or next deletion retry. */
export function nextLeaseWake(storage: FleetStorage): number | undefined {
  const row = storage.one<{ expires: string | null; cleanup: number | null }>(
    `SELECT (SELECT min(expires_at) FROM leases WHERE ${LIVE_LEASE_SQL}) AS expires, (SELECT min(cleanup_at) FROM leases WHERE cleanup_at IS NOT NULL) AS cleanup`,
  )
  const candidates = [row?.expires ? Date.parse(row.expires) : undefined, row?.cleanup ?? undefined].filter(
    (n): n is number => typeof n === 'number',
  )
  return candidates.length ? Math.min(...candidates) : undefined
}
