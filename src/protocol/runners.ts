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
const Lenient = (description: string) => v.optional(v.pipe(v.unknown(), v.description(description)))
export const ExternalRunnerInput = v.looseObject({
  id: Lenient(
    'string: 3 to 129 of A-Z a-z 0-9 _ . : - starting with a letter or digit (trimmed); else the row is skipped, as is a repeated ID',
  ),
  status: Lenient('string, lowercased; default unknown'),
  createdAt: Lenient('time; dropped when not a time or more than 5 minutes ahead'),
  ...Object.fromEntries(RUNNER_TEXT_FIELDS.map((field) => [field, Lenient('string, trimmed, at most 256 characters; dropped when empty')])),
  ...Object.fromEntries(RUNNER_URL_FIELDS.map((field) => [field, Lenient('string; kept only when it starts with https://github.com/')])),
})
export type ExternalRunnerInput = {
  id?: unknown
  status?: unknown
  createdAt?: unknown
} & Partial<Record<(typeof RUNNER_TEXT_FIELDS)[number] | (typeof RUNNER_URL_FIELDS)[number], unknown>>

export const RunnersSyncRequest = v.object({
  provider: Lenient('string, trimmed and lowercased, then 2 to 64 of a-z 0-9 - starting with a letter or digit; else 400 invalid_provider'),
  runners: v.optional(v.pipe(v.array(ExternalRunnerInput), v.description('at most 200 (else 400 too_many_runners)'))),
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
  provider: v.optional(v.pipe(v.string(), v.maxLength(256), v.description('only this provider'))),
  status: v.optional(v.pipe(v.string(), v.maxLength(256), v.description('only this status (exact)'))),
  stale: v.optional(v.pipe(v.string(), v.maxLength(16), v.description('true: only stale runners; false: only current ones; else both'))),
  limit: v.optional(v.pipe(v.string(), v.maxLength(16), v.description('default 100, at most 500'))),
})
export type RunnersQuery = v.InferOutput<typeof RunnersQuery>

export const RunnersResponse = v.object({ runners: v.array(ExternalRunnerRecord) })
export type RunnersResponse = v.InferOutput<typeof RunnersResponse>
