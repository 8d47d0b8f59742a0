import type { FleetDeps } from './deps.js'
import { cleanupMachine, dueCleanups, expireDueLeases, nextLeaseWake } from './lease-cleanup.js'
import { pruneRunHistory } from './runs.js'
import { closeEgressOf } from './egress.js'

/**
 * The one alarm schedule: lease expiry, machine deletion retries, run retention.
 * Alarms are at-least-once, so each step is idempotent and bounded; when a
 * batch is full the alarm comes back a second later instead of looping.
 */

export const EXPIRE_BATCH = 100
export const CLEANUP_BATCH = 20
export const PRUNE_BUDGET = 500
const SOON_MS = 1_000

export async function runAlarm(deps: FleetDeps): Promise<void> {
  const now = deps.now()
  const expired = expireDueLeases(deps.storage, now, EXPIRE_BATCH)
  // An expired lease keeps no egress path open (as on release).
  await closeEgressOf(deps.storage, deps.env, expired)
  const due = dueCleanups(deps.storage, now.getTime(), CLEANUP_BATCH)
  // Provider calls happen here, one lease at a time, outside any transaction.
  for (const leaseId of due) await cleanupMachine(deps, leaseId)

  const pruneAt = pruneRunHistory(deps.storage, deps.env, now, PRUNE_BUDGET).nextAt

  const more = expired.length === EXPIRE_BATCH || due.length === CLEANUP_BATCH
  // Work still due now was left on purpose (a full batch, or a create still running past its
  // expiry, which finishes the job itself): come back in a second, never spin.
  await scheduleAlarm(deps, {
    replace: true,
    extra: [more ? deps.now().getTime() + SOON_MS : undefined, pruneAt],
    notBefore: Date.now() + SOON_MS,
  })
}

/**
 * Sets the alarm to the earliest pending work. Outside the alarm handler it only
 * ever moves the alarm earlier (a stale later alarm is harmless: it recomputes).
 */
export async function scheduleAlarm(
  deps: FleetDeps,
  options: { replace?: boolean; extra?: (number | undefined)[]; notBefore?: number } = {},
): Promise<void> {
  const candidates = [nextLeaseWake(deps.storage), ...(options.extra ?? [])].filter(
    (n): n is number => typeof n === 'number' && Number.isFinite(n),
  )
  const next = candidates.length ? Math.min(...candidates) : undefined
  const storage = deps.ctx.storage
  const current = await storage.getAlarm()
  if (next === undefined) {
    if (options.replace && current !== null) await storage.deleteAlarm()
    return
  }
  if (options.replace || current === null || next < current) await storage.setAlarm(Math.max(next, options.notBefore ?? Date.now()))
}

/** `wakeBy` for FleetDeps: the alarm fires no later than `at`. */
export async function wakeBy(ctx: DurableObjectState, at: number): Promise<void> {
  const current = await ctx.storage.getAlarm()
  if (current === null || at < current) await ctx.storage.setAlarm(Math.max(at, Date.now()))
}
