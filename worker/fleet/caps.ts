import { fallbackHourlyUSD, round2 } from '../../src/cloud/classes.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import type { CostLimits } from '../../src/protocol/usage.js'
import type { Env } from '../env.js'
import { setting } from '../env.js'
import type { BrokerProvider } from '../providers/types.js'
import { LIVE_LEASE_SQL } from './lease-store.js'
import type { FleetStorage } from './storage.js'

/**
 * Active-lease and monthly spend caps (`CRABBOX_MAX_*` settings). Every
 * non-terminal lease counts (provisioning too) and spend is the reserved
 * worst case (`maxEstimatedUSD`). `enforceCaps` is synchronous so the
 * check and the reservation that follows it happen with no interleaving.
 */

function positive(env: Env, name: string): number {
  const n = Number(setting(env, name) ?? '0')
  return Number.isFinite(n) && n > 0 ? n : 0
}

/**
 * Live leases per credential (`CRABBOX_MAX_ACTIVE_LEASES_PER_CREDENTIAL`, default: the
 * per-org cap; 0 = none). Owner and org under the shared token are the caller's to
 * name, so rotating them must not add room: the credential is what they cannot choose.
 */
export function maxActiveLeasesPerCredential(env: Env): number {
  const raw = setting(env, 'CRABBOX_MAX_ACTIVE_LEASES_PER_CREDENTIAL')
  return Math.trunc(
    raw === undefined ? positive(env, 'CRABBOX_MAX_ACTIVE_LEASES_PER_ORG') : positive(env, 'CRABBOX_MAX_ACTIVE_LEASES_PER_CREDENTIAL'),
  )
}

export function costLimits(env: Env): CostLimits {
  return {
    maxActiveLeases: Math.trunc(positive(env, 'CRABBOX_MAX_ACTIVE_LEASES')),
    maxActiveLeasesPerOwner: Math.trunc(positive(env, 'CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER')),
    maxActiveLeasesPerOrg: Math.trunc(positive(env, 'CRABBOX_MAX_ACTIVE_LEASES_PER_ORG')),
    maxMonthlyUSD: positive(env, 'CRABBOX_MAX_MONTHLY_USD'),
    maxMonthlyUSDPerOwner: positive(env, 'CRABBOX_MAX_MONTHLY_USD_PER_OWNER'),
    maxMonthlyUSDPerOrg: positive(env, 'CRABBOX_MAX_MONTHLY_USD_PER_ORG'),
  }
}

/** Static hosts already exist and cost nothing extra; unknown providers get 0.5. */
const NON_CLOUD_RATE: Record<string, number> = { static: 0 }
const DEFAULT_RATE = 0.5

function envRates(env: Env): Record<string, number> {
  const raw = setting(env, 'CRABBOX_COST_RATES_JSON')
  if (!raw) return {}
  try {
    const parsed: unknown = JSON.parse(raw)
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {}
    const out: Record<string, number> = {}
    for (const [key, value] of Object.entries(parsed)) {
      const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : Number.NaN
      if (Number.isFinite(n) && n > 0) out[key] = n
    }
    return out
  } catch {
    return {}
  }
}

/** USD per hour: env rates, then the provider's live price, then the class tables (src/cloud/classes.ts). */
export async function hourlyRate(env: Env, providerName: string, provider: BrokerProvider, serverType: string): Promise<number> {
  const key = `${providerName}:${serverType}`
  const fromEnv = envRates(env)[key]
  if (fromEnv) return fromEnv
  try {
    const live = await provider.price(serverType)
    if (typeof live === 'number' && Number.isFinite(live) && live > 0) return live
  } catch {
    // A pricing outage must not block leases; fall through to the table.
  }
  if (providerName === 'hetzner' || providerName === 'aws' || providerName === 'azure') return fallbackHourlyUSD(providerName, serverType)
  return NON_CLOUD_RATE[providerName] ?? DEFAULT_RATE
}

export const maxEstimatedUSD = (ttlSeconds: number, hourlyUSD: number): number => round2((Math.max(1, ttlSeconds) / 3600) * hourlyUSD)

/** `YYYY-MM` of an ISO timestamp (UTC). */
export const monthOf = (iso: string): string => iso.slice(0, 7)

/** Who a new lease is for: owner and org count within their namespace (claimed or verified), plus the credential. */
export interface CapCandidate {
  owner: string
  org: string
  claimed: boolean
  /** Empty: not capped per credential (the admin token). */
  credential: string
  month: string
  reservedUSD: number
}

/**
 * Throws 429 `cost_limit_exceeded` when one more lease for owner/org with this
 * reservation would break a cap. Call inside the transaction that then inserts it.
 */
export function enforceCaps(storage: FleetStorage, limits: CostLimits, candidate: CapCandidate, perCredential = 0): void {
  const fail = (message: string) => {
    throw new ApiError(429, ErrorCode.costLimitExceeded, message)
  }
  const claimed = candidate.claimed ? 1 : 0
  const credentialCap = candidate.credential ? perCredential : 0
  if (limits.maxActiveLeases || limits.maxActiveLeasesPerOwner || limits.maxActiveLeasesPerOrg || credentialCap) {
    const counts = storage.one<{ total: number; owner: number; org: number; credential: number }>(
      `SELECT count(*) AS total, coalesce(sum(owner = ? AND claimed = ?), 0) AS owner, coalesce(sum(org = ? AND claimed = ?), 0) AS org,
              coalesce(sum(credential = ?), 0) AS credential
         FROM leases WHERE ${LIVE_LEASE_SQL}`,
      candidate.owner,
      claimed,
      candidate.org,
      claimed,
      candidate.credential,
    ) ?? { total: 0, owner: 0, org: 0, credential: 0 }
    if (limits.maxActiveLeases && counts.total + 1 > limits.maxActiveLeases)
      fail(`active lease limit exceeded: ${counts.total + 1}/${limits.maxActiveLeases}`)
    if (limits.maxActiveLeasesPerOwner && counts.owner + 1 > limits.maxActiveLeasesPerOwner)
      fail(`active lease limit for owner exceeded: ${counts.owner + 1}/${limits.maxActiveLeasesPerOwner}`)
    if (limits.maxActiveLeasesPerOrg && counts.org + 1 > limits.maxActiveLeasesPerOrg)
      fail(`active lease limit for org exceeded: ${counts.org + 1}/${limits.maxActiveLeasesPerOrg}`)
    if (credentialCap && counts.credential + 1 > credentialCap)
      fail(`active lease limit for this credential exceeded: ${counts.credential + 1}/${credentialCap}`)
  }
  if (limits.maxMonthlyUSD || limits.maxMonthlyUSDPerOwner || limits.maxMonthlyUSDPerOrg) {
    const spent = storage.one<{ total: number; owner: number; org: number }>(
      `SELECT coalesce(sum(reserved_usd), 0) AS total,
              coalesce(sum(CASE WHEN owner = ? AND claimed = ? THEN reserved_usd ELSE 0 END), 0) AS owner,
              coalesce(sum(CASE WHEN org = ? AND claimed = ? THEN reserved_usd ELSE 0 END), 0) AS org
         FROM leases WHERE month = ?`,
      candidate.owner,
      claimed,
      candidate.org,
      claimed,
      candidate.month,
    ) ?? { total: 0, owner: 0, org: 0 }
    const usd = (n: number) => `$${n.toFixed(2)}`
    const check = (current: number, limit: number, scope: string) => {
      const next = round2(current + candidate.reservedUSD)
      if (limit && next > limit) fail(`monthly budget${scope} exceeded: ${usd(next)}/${usd(limit)}`)
    }
    check(spent.total, limits.maxMonthlyUSD, '')
    check(spent.owner, limits.maxMonthlyUSDPerOwner, ' for owner')
    check(spent.org, limits.maxMonthlyUSDPerOrg, ' for org')
  }
}
