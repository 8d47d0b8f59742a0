import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import {
  MAX_SYNC_RUNNERS,
  RUNNER_ID_PATTERN,
  RUNNER_LIST_DEFAULT,
  RUNNER_LIST_MAX,
  RUNNER_PROVIDER_PATTERN,
  RUNNER_TEXT_FIELDS,
  RUNNER_URL_FIELDS,
  type ExternalRunnerInput,
  type ExternalRunnerRecord,
  type RunnersQuery,
} from '../../src/protocol/runners.js'
import type { Identity } from '../auth/identity.js'
import type { FleetStorage } from './storage.js'

/**
 * External runners (`/v1/runners`): rows a delegated provider's `list` reported through the CLI.
 * One row per (provider, ID, org, owner, namespace): two callers reporting the same testbox keep
 * their own rows. A caller sees their own rows (same owner, org and claimed/verified namespace);
 * an admin sees every row.
 */

export const RUNNER_SCHEMA = [
  `CREATE TABLE external_runners (
     provider TEXT NOT NULL,
     id TEXT NOT NULL,
     org TEXT NOT NULL,
     owner TEXT NOT NULL,
     claimed INTEGER NOT NULL,
     status TEXT NOT NULL,
     stale INTEGER NOT NULL DEFAULT 0,
     seen_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     record TEXT NOT NULL,
     PRIMARY KEY (provider, id, org, owner, claimed)
   )`,
  'CREATE INDEX external_runners_by_owner ON external_runners (owner, org, claimed, provider, stale)',
  'CREATE INDEX external_runners_by_seen ON external_runners (seen_at DESC)',
]

/** A runner marked missing is forgotten this long after it was last reported. */
export const STALE_RUNNER_TTL_MS = 7 * 24 * 3600 * 1000

const MAX_TEXT = 256
const FUTURE_SLACK_MS = 5 * 60 * 1000

const text = (value: unknown): string | undefined => {
  if (typeof value !== 'string') return undefined
  const trimmed = value.trim().slice(0, MAX_TEXT).trim()
  return trimmed || undefined
}

/** The provider name a sync names: trimmed, at most 256 characters, lowercased, then checked. */
export function runnerProvider(value: unknown): string {
  const name = (typeof value === 'string' ? value.trim().slice(0, MAX_TEXT) : '').toLowerCase()
  if (!RUNNER_PROVIDER_PATTERN.test(name))
    throw new ApiError(
      400,
      ErrorCode.invalidProvider,
      'provider must be 2 to 64 characters: a-z, 0-9 and -, starting with a letter or digit',
    )
  return name
}

const githubUrl = (value: unknown): string | undefined => {
  const url = text(value)
  return url?.startsWith('https://github.com/') ? url : undefined
}

function createdAt(value: unknown, now: Date): string | undefined {
  const raw = text(value)
  if (!raw) return undefined
  const at = Date.parse(raw)
  if (Number.isNaN(at) || at > now.getTime() + FUTURE_SLACK_MS) return undefined
  return new Date(at).toISOString()
}

/** The reported fields of one input row, or undefined when its ID is not a runner ID. */
export function runnerFields(
  input: ExternalRunnerInput,
  now: Date,
): (Partial<ExternalRunnerRecord> & { id: string; status: string }) | undefined {
  const id = typeof input.id === 'string' ? input.id.trim().slice(0, MAX_TEXT) : ''
  if (!RUNNER_ID_PATTERN.test(id)) return undefined
  const fields: Partial<ExternalRunnerRecord> & { id: string; status: string } = {
    id,
    status: (text(input.status) ?? 'unknown').toLowerCase(),
  }
  const record = fields as unknown as Record<string, string>
  for (const field of RUNNER_TEXT_FIELDS) {
    const value = text(input[field])
    if (value) record[field] = value
  }
  for (const field of RUNNER_URL_FIELDS) {
    const value = githubUrl(input[field])
    if (value) record[field] = value
  }
  const created = createdAt(input.createdAt, now)
  if (created) fields.createdAt = created
  return fields
}

type Row = { record: string }

function save(storage: FleetStorage, runner: ExternalRunnerRecord, claimed: boolean): void {
  storage.run(
    `INSERT INTO external_runners (provider, id, org, owner, claimed, status, stale, seen_at, updated_at, record)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (provider, id, org, owner, claimed) DO UPDATE SET
       status = excluded.status, stale = excluded.stale, seen_at = excluded.seen_at,
       updated_at = excluded.updated_at, record = excluded.record`,
    runner.provider,
    runner.id,
    runner.org,
    runner.owner,
    claimed ? 1 : 0,
    runner.status,
    runner.stale ? 1 : 0,
    runner.lastSeenAt,
    runner.updatedAt,
    JSON.stringify(runner),
  )
}

/**
 * `POST /v1/runners/sync`: stores the caller's current runners of one provider and marks the
 * ones a previous sync reported but this one does not as `missing` (stale). Atomic.
 */
export function syncRunners(
  storage: FleetStorage,
  identity: Identity,
  providerName: unknown,
  inputs: readonly ExternalRunnerInput[],
  now: Date,
): { runners: ExternalRunnerRecord[]; stale: ExternalRunnerRecord[] } {
  const provider = runnerProvider(providerName)
  if (inputs.length > MAX_SYNC_RUNNERS)
    throw new ApiError(400, ErrorCode.tooManyRunners, `a sync carries at most ${MAX_SYNC_RUNNERS} runners`)
  const at = now.toISOString()
  const { owner, org } = identity
  const claimed = identity.claimed ? 1 : 0
  return storage.transaction(() => {
    const previous = new Map(
      storage
        .all<Row & { id: string; stale: number }>(
          'SELECT id, stale, record FROM external_runners WHERE owner = ? AND org = ? AND claimed = ? AND provider = ?',
          owner,
          org,
          claimed,
          provider,
        )
        .map((row) => [row.id, row]),
    )
    const runners: ExternalRunnerRecord[] = []
    const seen = new Set<string>()
    for (const input of inputs) {
      const fields = runnerFields(input, now)
      if (!fields || seen.has(fields.id)) continue
      seen.add(fields.id)
      const before = previous.get(fields.id)
      const firstSeenAt = before ? (JSON.parse(before.record) as ExternalRunnerRecord).firstSeenAt : at
      const runner: ExternalRunnerRecord = { ...fields, provider, owner, org, firstSeenAt, lastSeenAt: at, updatedAt: at }
      save(storage, runner, identity.claimed)
      runners.push(runner)
    }
    const stale: ExternalRunnerRecord[] = []
    for (const [id, row] of previous) {
      if (seen.has(id) || row.stale) continue
      const runner: ExternalRunnerRecord = {
        ...(JSON.parse(row.record) as ExternalRunnerRecord),
        status: 'missing',
        stale: true,
        updatedAt: at,
      }
      save(storage, runner, identity.claimed)
      stale.push(runner)
    }
    // Missing runners are kept a week, then forgotten: the table stays bounded.
    storage.run(
      'DELETE FROM external_runners WHERE owner = ? AND org = ? AND claimed = ? AND provider = ? AND stale = 1 AND updated_at < ?',
      owner,
      org,
      claimed,
      provider,
      new Date(now.getTime() - STALE_RUNNER_TTL_MS).toISOString(),
    )
    return { runners, stale }
  })
}

export interface RunnerFilter {
  provider?: string
  status?: string
  stale?: boolean
  limit: number
}

/** The lenient reading of `GET /v1/runners`'s query: an unknown `stale` means both, `limit` 1…500 (default 100). */
export function runnerFilter(query: RunnersQuery): RunnerFilter {
  const limit = Number.parseInt(query.limit ?? '', 10)
  return {
    ...(query.provider ? { provider: query.provider.trim().toLowerCase() } : {}),
    ...(query.status ? { status: query.status } : {}),
    ...(query.stale === 'true' ? { stale: true } : query.stale === 'false' ? { stale: false } : {}),
    limit: Number.isNaN(limit) || limit <= 0 ? RUNNER_LIST_DEFAULT : Math.min(limit, RUNNER_LIST_MAX),
  }
}

/** The runners `identity` may see, most recently reported first. */
export function listRunners(storage: FleetStorage, identity: Identity, filter: RunnerFilter): ExternalRunnerRecord[] {
  const where: string[] = []
  const bindings: unknown[] = []
  if (!identity.admin) {
    where.push('owner = ?', 'org = ?', 'claimed = ?')
    bindings.push(identity.owner, identity.org, identity.claimed ? 1 : 0)
  }
  if (filter.provider !== undefined) {
    where.push('provider = ?')
    bindings.push(filter.provider)
  }
  if (filter.status !== undefined) {
    where.push('status = ?')
    bindings.push(filter.status)
  }
  if (filter.stale !== undefined) {
    where.push('stale = ?')
    bindings.push(filter.stale ? 1 : 0)
  }
  const clause = where.length ? `WHERE ${where.join(' AND ')}` : ''
  return storage
    .all<Row>(`SELECT record FROM external_runners ${clause} ORDER BY seen_at DESC, id DESC LIMIT ?`, ...bindings, filter.limit)
    .map((row) => JSON.parse(row.record) as ExternalRunnerRecord)
}

/**
 * One runner the caller may see (the portal's runner page). An admin may name the owner and
 * org when several have the same runner; without them the most recently reported row wins.
 */
export function findRunner(
  storage: FleetStorage,
  identity: Identity,
  provider: string,
  id: string,
  which: { owner?: string; org?: string } = {},
): ExternalRunnerRecord | undefined {
  const where = ['provider = ?', 'id = ?']
  const bindings: unknown[] = [provider, id]
  const owner = identity.admin ? which.owner : identity.owner
  const org = identity.admin ? which.org : identity.org
  const add = (clause: string, value: unknown) => {
    where.push(clause)
    bindings.push(value)
  }
  if (owner !== undefined) add('owner = ?', owner)
  if (org !== undefined) add('org = ?', org)
  if (!identity.admin) add('claimed = ?', identity.claimed ? 1 : 0)
  const row = storage.one<Row>(
    `SELECT record FROM external_runners WHERE ${where.join(' AND ')} ORDER BY seen_at DESC LIMIT 1`,
    ...bindings,
  )
  return row ? (JSON.parse(row.record) as ExternalRunnerRecord) : undefined
}
