import * as v from 'valibot'

/**
 * External runner wire shapes: machines a delegated provider owns (Blacksmith Testboxes) that
 * the CLI reports to the broker so the portal can show them. `POST /v1/runners/sync` replaces
 * the caller's rows of one provider; `GET /v1/runners` lists the rows the caller may see
 * (an admin: everyone's; anyone else: their own owner and org).
 */

export const RUNNER_PROVIDER_PATTERN = /^[a-z0-9][a-z0-9-]{1,63}$/
export const RUNNER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{2,128}$/
/** At most this many runners in one sync (more is 400 `too_many_runners`). */
export const MAX_SYNC_RUNNERS = 200
export const RUNNER_LIST_DEFAULT = 100
export const RUNNER_LIST_MAX = 500

/** The optional string fields of a runner, each trimmed, at most 256 characters, dropped when empty. */
export const RUNNER_TEXT_FIELDS = [
  'repo',
  'workflow',
  'job',
  'ref',
  'actionsRepo',
  'actionsRunID',
  'actionsRunStatus',
  'actionsRunConclusion',
  'actionsWorkflowName',
] as const
/** Links kept only when they point at https://github.com/. */
export const RUNNER_URL_FIELDS = ['actionsRunURL', 'actionsWorkflowURL'] as const

const Text = v.optional(v.string())

/**
 * One runner as the CLI reports it. The broker is lenient here: an `id` that is not a runner ID
 * skips the row, bad optional fields are dropped (never a 400 for the whole sync).
 */
export const ExternalRunnerInput = v.looseObject({
  id: v.optional(v.unknown()),
  status: v.optional(v.unknown()),
  createdAt: v.optional(v.unknown()),
  ...Object.fromEntries([...RUNNER_TEXT_FIELDS, ...RUNNER_URL_FIELDS].map((field) => [field, v.optional(v.unknown())])),
})
export type ExternalRunnerInput = {
  id?: unknown
  status?: unknown
  createdAt?: unknown
} & Partial<Record<(typeof RUNNER_TEXT_FIELDS)[number] | (typeof RUNNER_URL_FIELDS)[number], unknown>>

export const RunnersSyncRequest = v.object({
  /** Trimmed and lowercased; must then be 2 to 64 of a-z, 0-9 and - (else 400 `invalid_provider`). */
  provider: v.optional(v.unknown()),
  runners: v.optional(v.array(ExternalRunnerInput)),
})
export type RunnersSyncRequest = v.InferOutput<typeof RunnersSyncRequest>

/** A stored runner (one per provider, ID, org and owner). */
export const ExternalRunnerRecord = v.object({
  id: v.string(),
  provider: v.string(),
  owner: v.string(),
  org: v.string(),
  /** The provider's word, lowercased (`unknown` when it gave none); `missing` once a later sync no longer lists it. */
  status: v.string(),
  repo: Text,
  workflow: Text,
  job: Text,
  ref: Text,
  createdAt: Text,
  actionsRepo: Text,
  actionsRunID: Text,
  actionsRunURL: Text,
  actionsRunStatus: Text,
  actionsRunConclusion: Text,
  actionsWorkflowName: Text,
  actionsWorkflowURL: Text,
  firstSeenAt: v.string(),
  lastSeenAt: v.string(),
  updatedAt: v.string(),
  /** true only for runners a later sync no longer listed. */
  stale: v.optional(v.boolean()),
})
export type ExternalRunnerRecord = v.InferOutput<typeof ExternalRunnerRecord>

export const RunnersSyncResponse = v.object({
  runners: v.array(ExternalRunnerRecord),
  /** Runners this sync marked missing. */
  stale: v.array(ExternalRunnerRecord),
})
export type RunnersSyncResponse = v.InferOutput<typeof RunnersSyncResponse>

export const RunnersQuery = v.object({
  provider: v.optional(v.pipe(v.string(), v.maxLength(256))),
  status: v.optional(v.pipe(v.string(), v.maxLength(256))),
  /** `true`: only stale runners; `false`: only current ones; anything else: both. */
  stale: v.optional(v.pipe(v.string(), v.maxLength(16))),
  limit: v.optional(v.pipe(v.string(), v.maxLength(16))),
})
export type RunnersQuery = v.InferOutput<typeof RunnersQuery>

export const RunnersResponse = v.object({ runners: v.array(ExternalRunnerRecord) })
export type RunnersResponse = v.InferOutput<typeof RunnersResponse>
