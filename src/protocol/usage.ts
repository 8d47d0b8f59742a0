import * as v from 'valibot'

/** `GET /v1/usage`: spend so far and the caps in force. */

export const USAGE_SCOPES = ['user', 'org', 'all'] as const
export type UsageScope = (typeof USAGE_SCOPES)[number]

/** Each `by*` list is cut to this many groups (largest reservation first). */
export const USAGE_GROUP_LIMIT = 200

export const UsageQuery = v.object({
  scope: v.optional(v.picklist(USAGE_SCOPES, 'user, org or all')),
  owner: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(320))),
  org: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128))),
  month: v.optional(v.pipe(v.string(), v.regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'a month like 2026-05'))),
})
export type UsageQuery = v.InferOutput<typeof UsageQuery>

export const UsageGroup = v.object({
  key: v.string(),
  leases: v.number(),
  activeLeases: v.number(),
  runtimeSeconds: v.number(),
  estimatedUSD: v.number(),
  reservedUSD: v.number(),
})
export type UsageGroup = v.InferOutput<typeof UsageGroup>

export const UsageSummary = v.object({
  month: v.string(),
  scope: v.picklist(USAGE_SCOPES),
  owner: v.optional(v.string()),
  org: v.optional(v.string()),
  leases: v.number(),
  activeLeases: v.number(),
  runtimeSeconds: v.number(),
  estimatedUSD: v.number(),
  reservedUSD: v.number(),
  byOwner: v.array(UsageGroup),
  byOrg: v.array(UsageGroup),
  byProvider: v.array(UsageGroup),
  byServerType: v.array(UsageGroup),
})
export type UsageSummary = v.InferOutput<typeof UsageSummary>

/** Spend caps in force; 0 means off. */
export const CostLimits = v.object({
  maxActiveLeases: v.number(),
  maxActiveLeasesPerOwner: v.number(),
  maxActiveLeasesPerOrg: v.number(),
  maxMonthlyUSD: v.number(),
  maxMonthlyUSDPerOwner: v.number(),
  maxMonthlyUSDPerOrg: v.number(),
})
export type CostLimits = v.InferOutput<typeof CostLimits>

export const UsageResponse = v.object({ usage: UsageSummary, limits: CostLimits })
export type UsageResponse = v.InferOutput<typeof UsageResponse>
