import type { CostLimits, UsageGroup, UsageResponse } from '../protocol/usage.js'
import { renderTable } from './table.js'

/** `12.5` → `$12.50`. */
export const formatUSD = (usd: number): string => `$${usd.toFixed(2)}`

/** Whole seconds as `3d4h`, `2h05m`, `7m30s`, `42s`. */
export function formatRuntime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  const d = Math.floor(s / 86_400)
  const h = Math.floor((s % 86_400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  const two = (n: number) => String(n).padStart(2, '0')
  if (d > 0) return `${d}d${h}h`
  if (h > 0) return `${h}h${two(m)}m`
  if (m > 0) return `${m}m${two(s % 60)}s`
  return `${s}s`
}

/** `used of cap (pct%)`, or `off` when the cap is 0, or `-` when this view does not show what counts against it. */
function against(used: number | undefined, cap: number, format: (n: number) => string): string {
  if (cap <= 0) return used === undefined ? 'off' : `${format(used)} (no cap)`
  if (used === undefined) return `cap ${format(cap)}`
  return `${format(used)} of ${format(cap)} (${Math.round((used / cap) * 100)}%)`
}

function limitRows(response: UsageResponse): string[][] {
  const { usage } = response
  const limits: CostLimits = response.limits
  const mine = (scope: string) => usage.scope === scope
  const count = (n: number) => String(n)
  return [
    ['active leases', 'per user', against(mine('user') ? usage.activeLeases : undefined, limits.maxActiveLeasesPerOwner, count)],
    ['active leases', 'per org', against(mine('org') ? usage.activeLeases : undefined, limits.maxActiveLeasesPerOrg, count)],
    ['active leases', 'fleet', against(mine('all') ? usage.activeLeases : undefined, limits.maxActiveLeases, count)],
    ['monthly spend', 'per user', against(mine('user') ? usage.reservedUSD : undefined, limits.maxMonthlyUSDPerOwner, formatUSD)],
    ['monthly spend', 'per org', against(mine('org') ? usage.reservedUSD : undefined, limits.maxMonthlyUSDPerOrg, formatUSD)],
    ['monthly spend', 'fleet', against(mine('all') ? usage.reservedUSD : undefined, limits.maxMonthlyUSD, formatUSD)],
  ]
}

function groupTable(title: string, groups: readonly UsageGroup[]): string[] {
  if (groups.length === 0) return []
  const rows = groups.map((g) => [
    g.key || '-',
    String(g.leases),
    String(g.activeLeases),
    formatRuntime(g.runtimeSeconds),
    formatUSD(g.estimatedUSD),
    formatUSD(g.reservedUSD),
  ])
  return [
    '',
    ...renderTable([title, 'LEASES', 'ACTIVE', 'RUNTIME', 'ESTIMATED', 'RESERVED'], rows, [
      'left',
      'right',
      'right',
      'right',
      'right',
      'right',
    ]),
  ]
}

/**
 * `crabbox usage`: the month and scope, the totals, spend against each cap
 * (monthly caps count reservations: a lease reserves its TTL at its hourly
 * rate when it starts), then the totals by owner, org, provider and server type.
 */
export function renderUsage(response: UsageResponse): string {
  const { usage } = response
  const who = usage.scope === 'user' ? ` user=${usage.owner ?? '-'}` : usage.scope === 'org' ? ` org=${usage.org ?? '-'}` : ''
  const lines = [
    `usage ${usage.month} scope=${usage.scope}${who}`,
    `leases=${usage.leases} active=${usage.activeLeases} runtime=${formatRuntime(usage.runtimeSeconds)} estimated=${formatUSD(usage.estimatedUSD)} reserved=${formatUSD(usage.reservedUSD)}`,
    '',
    ...renderTable(['LIMIT', 'SCOPE', 'USED'], limitRows(response)),
    ...groupTable('OWNER', usage.byOwner),
    ...groupTable('ORG', usage.byOrg),
    ...groupTable('PROVIDER', usage.byProvider),
    ...groupTable('SERVER TYPE', usage.byServerType),
  ]
  return `${lines.join('\n')}\n`
}
