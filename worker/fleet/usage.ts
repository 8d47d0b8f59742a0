import { USAGE_GROUP_LIMIT, type UsageQuery, type UsageGroup, type UsageScope, type UsageSummary } from '../../src/protocol/usage.js'
import type { Identity } from '../auth/identity.js'
import { monthOf } from './caps.js'
import { LIVE_LEASE_SQL } from './lease-store.js'
import type { FleetStorage } from './storage.js'

/**
 * Monthly usage (`GET /v1/usage`) aggregated inside SQLite over the `leases`
 * table (its `month` index), so the object never loads a month of lease records into
 * memory: one totals row plus four bounded GROUP BY lists.
 */

export interface UsageSelection {
  month: string
  scope: UsageScope
  owner?: string
  org?: string
  /** Non-admins: only leases in the caller's namespace (a claimed owner never counts a verified one's, nor the reverse). */
  claimed?: boolean
}

/**
 * Who sees what: non-admins only their own leases (their owner *and* org: the same
 * owner name in another org is someone else's usage); admins pick a scope (default `user`).
 */
export function usageSelection(identity: Identity, query: UsageQuery, now: Date): UsageSelection {
  const month = query.month ?? monthOf(now.toISOString())
  if (!identity.admin) return { month, scope: 'user', owner: identity.owner, org: identity.org, claimed: identity.claimed }
  const scope = query.scope ?? 'user'
  if (scope === 'user') return { month, scope, owner: query.owner ?? identity.owner }
  if (scope === 'org') return { month, scope, org: query.org ?? identity.org }
  return { month, scope }
}

// Per lease: runtime in whole seconds (now while live, else until it ended), the estimate
// at its hourly rate, and the reservation (maxEstimatedUSD, else the estimate). Times are
// turned into integer milliseconds before subtracting so the runtime floors to whole seconds exactly.
const PER_LEASE = `
  WITH base AS (
    SELECT owner, org, provider,
      COALESCE(json_extract(record, '$.serverType'), '') AS server_type,
      (${LIVE_LEASE_SQL} AND expires_at > ?) AS active,
      MAX(0, CAST(round((julianday(CASE WHEN ${LIVE_LEASE_SQL} THEN ?
                                       ELSE COALESCE(json_extract(record, '$.endedAt'), json_extract(record, '$.releasedAt'), ?) END)
                         - julianday(created_at)) * 86400000.0) AS INTEGER) / 1000) AS runtime,
      COALESCE(json_extract(record, '$.estimatedHourlyUSD'), 0) AS hourly,
      reserved_usd
    FROM leases WHERE month = ? %FILTER%
  ), priced AS (
    SELECT *, round(runtime / 3600.0 * hourly, 2) AS estimated FROM base
  ), lease AS (
    SELECT *, CASE WHEN reserved_usd > 0 THEN round(reserved_usd, 2) ELSE estimated END AS reserved FROM priced
  )`

type Row = { key: string; leases: number; activeLeases: number; runtimeSeconds: number; estimatedUSD: number; reservedUSD: number }

const GROUPS = { byOwner: 'owner', byOrg: 'org', byProvider: 'provider', byServerType: 'server_type' } as const

/** The summary for one selection; bounded whatever the month holds. */
export function usageSummary(storage: FleetStorage, selection: UsageSelection, now: Date): UsageSummary {
  const nowIso = now.toISOString()
  const filters: string[] = []
  const bindings: unknown[] = [nowIso, nowIso, nowIso, selection.month]
  if (selection.scope === 'user' && selection.owner !== undefined) {
    filters.push('owner = ?')
    bindings.push(selection.owner)
  }
  // A user selection may also name the org (always, for non-admins); an org selection always does.
  if (selection.scope !== 'all' && selection.org !== undefined) {
    filters.push('org = ?')
    bindings.push(selection.org)
  }
  if (selection.claimed !== undefined) {
    filters.push('claimed = ?')
    bindings.push(selection.claimed ? 1 : 0)
  }
  const cte = PER_LEASE.replace('%FILTER%', filters.map((f) => `AND ${f}`).join(' '))
  const aggregate = `COUNT(*) AS leases, COALESCE(SUM(active), 0) AS activeLeases, COALESCE(SUM(runtime), 0) AS runtimeSeconds,
    round(COALESCE(SUM(estimated), 0), 2) AS estimatedUSD, round(COALESCE(SUM(reserved), 0), 2) AS reservedUSD`

  const totals = storage.one<Row>(`${cte} SELECT '' AS key, ${aggregate} FROM lease`, ...bindings)!
  const group = (column: string): UsageGroup[] =>
    storage
      .all<Row>(
        `${cte} SELECT ${column} AS key, ${aggregate} FROM lease GROUP BY ${column} ORDER BY reservedUSD DESC, key ASC LIMIT ?`,
        ...bindings,
        USAGE_GROUP_LIMIT,
      )
      .map((row) => ({ ...row, key: String(row.key) }))

  return {
    month: selection.month,
    scope: selection.scope,
    ...(selection.scope === 'user' && selection.owner !== undefined ? { owner: selection.owner } : {}),
    ...(selection.scope !== 'all' && selection.org !== undefined ? { org: selection.org } : {}),
    leases: totals.leases,
    activeLeases: totals.activeLeases,
    runtimeSeconds: totals.runtimeSeconds,
    estimatedUSD: totals.estimatedUSD,
    reservedUSD: totals.reservedUSD,
    byOwner: group(GROUPS.byOwner),
    byOrg: group(GROUPS.byOrg),
    byProvider: group(GROUPS.byProvider),
    byServerType: group(GROUPS.byServerType),
  }
}
