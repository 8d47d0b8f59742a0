import { ApiError } from '../../src/protocol/errors.js'
import { newRunId } from '../../src/protocol/ids.js'
import { mergeTelemetrySeries, sanitizeTelemetry, type LeaseTelemetry } from '../../src/protocol/leases.js'
import {
  RUN_LIMITS,
  tailUtf8,
  utf8Length,
  type CreateRunRequest,
  type FinishRunRequest,
  type ListRunsQuery,
  type RunEventRecord,
  type RunEventRequest,
  type RunRecord,
  type RunTelemetry,
} from '../../src/protocol/runs.js'
import { canSeeOwned, type Identity } from '../auth/identity.js'
import { decodeCursor, encodeCursor, type FleetStorage } from './storage.js'

/**
 * Run history: records, numbered events and bounded logs, kept in the Fleet object's
 * SQLite tables. Every mutation is synchronous SQL inside one transaction, so two
 * requests can never interleave between reading `eventCount` and writing the next event.
 */

/** Who is asking (the identity the edge forwarded); only owner, org and admin matter here. */
export type RunCaller = Pick<Identity, 'owner' | 'org' | 'admin'>

/** The slice of a lease a run copies at creation (the lease modules own lease records). */
export interface RunLeaseInfo {
  id: string
  slug?: string
  provider?: string
  target?: string
  windowsMode?: string
  class?: string
  serverType?: string
}

/** Events kept per run; past this, appends answer 413 so one run cannot fill the object. */
export const MAX_EVENTS_PER_RUN = 50_000

/** Run history tables; applied once when the object starts (schema.ts). */
export const RUN_SCHEMA = [
  `CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    org TEXT NOT NULL,
    lease_id TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    record TEXT NOT NULL
  )`,
  'CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at, id)',
  'CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, org, started_at, id)',
  'CREATE INDEX IF NOT EXISTS runs_by_lease ON runs (lease_id, started_at, id)',
  `CREATE TABLE IF NOT EXISTS run_events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
  )`,
  `CREATE TABLE IF NOT EXISTS run_logs (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    chunk TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
  )`,
]

const notFound = () => new ApiError(404, 'not_found', 'run not found')

export const canSeeRun = (caller: RunCaller, run: Pick<RunRecord, 'owner' | 'org'>): boolean => canSeeOwned(run, caller as Identity)

function readRun(storage: FleetStorage, id: string): RunRecord | undefined {
  const row = storage.one<{ record: string }>('SELECT record FROM runs WHERE id = ?', id)
  return row ? (JSON.parse(row.record) as RunRecord) : undefined
}

function writeRun(storage: FleetStorage, run: RunRecord): void {
  storage.run(
    `INSERT INTO runs (id, owner, org, lease_id, state, started_at, record) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (id) DO UPDATE SET lease_id = excluded.lease_id, state = excluded.state, record = excluded.record`,
    run.id,
    run.owner,
    run.org,
    run.leaseID,
    run.state,
    run.startedAt,
    JSON.stringify(run),
  )
}

/** Run by ID if the caller may see it; missing and invisible look the same (404). */
export function getRun(storage: FleetStorage, caller: RunCaller, id: string): RunRecord {
  const run = readRun(storage, id)
  if (!run || !canSeeRun(caller, run)) throw notFound()
  return run
}

/** Run by ID without a visibility check, for pushes that check per socket. */
export function peekRun(storage: FleetStorage, id: string): RunRecord | undefined {
  return readRun(storage, id)
}

const PHASE_BY_TYPE: Record<string, string> = {
  'leasing.started': 'leasing',
  'lease.created': 'leased',
  'bootstrap.waiting': 'bootstrap',
  'sync.started': 'sync',
  'sync.finished': 'synced',
  'command.started': 'command',
  stdout: 'command',
  stderr: 'command',
  'lease.released': 'released',
}

const SUMMARY_FIELDS = ['leaseID', 'slug', 'provider', 'target', 'windowsMode', 'class', 'serverType'] as const

/** Appends inside the caller's transaction: seq = eventCount + 1, then the run summary (phase, lease fields, state on `run.failed`). */
function appendLocked(storage: FleetStorage, run: RunRecord, input: RunEventRequest, now: Date): RunEventRecord {
  const seq = (run.eventCount ?? 0) + 1
  if (seq > MAX_EVENTS_PER_RUN) throw new ApiError(413, 'run_event_limit', `a run keeps at most ${MAX_EVENTS_PER_RUN} events`)
  const createdAt = now.toISOString()
  const event = { runID: run.id, seq, ...dropUndefined(input), createdAt } as RunEventRecord
  storage.run('INSERT INTO run_events (run_id, seq, record) VALUES (?, ?, ?)', run.id, seq, JSON.stringify(event))

  const phase = event.phase ?? PHASE_BY_TYPE[event.type]
  if (phase) run.phase = phase
  for (const key of SUMMARY_FIELDS) if (event[key] !== undefined) run[key] = event[key]!
  if (event.type === 'run.failed') {
    run.state = 'failed'
    run.phase = 'failed'
    run.endedAt = createdAt
  }
  run.eventCount = seq
  run.lastEventAt = createdAt
  writeRun(storage, run)
  return event
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

export interface CreatedRun {
  run: RunRecord
  event: RunEventRecord
}

/** `POST /v1/runs`: a running run whose first event (seq 1) is `run.started`. */
export function createRun(
  storage: FleetStorage,
  caller: RunCaller,
  input: CreateRunRequest,
  lease: RunLeaseInfo | undefined,
  now = new Date(),
): CreatedRun {
  const startedAt = now.toISOString()
  const run: RunRecord = {
    id: newRunId(),
    leaseID: lease?.id ?? input.leaseID,
    ...pick(lease?.slug),
    owner: caller.owner,
    org: caller.org,
    provider: lease?.provider ?? input.provider ?? 'hetzner',
    target: lease?.target ?? input.target ?? 'linux',
    ...((lease?.windowsMode ?? input.windowsMode) ? { windowsMode: lease?.windowsMode ?? input.windowsMode } : {}),
    class: lease?.class ?? input.class ?? '',
    serverType: lease?.serverType ?? input.serverType ?? '',
    command: input.command,
    state: 'running',
    phase: 'starting',
    logBytes: 0,
    logTruncated: false,
    startedAt,
    lastEventAt: startedAt,
    eventCount: 0,
  }
  return storage.transaction(() => {
    writeRun(storage, run)
    const event = appendLocked(storage, run, { type: 'run.started', phase: 'starting' } as RunEventRequest, now)
    return { run, event }
  })
}

const pick = (slug: string | undefined) => (slug ? { slug } : {})

/** `POST /v1/runs/{id}/events`: numbered atomically; works after finish too. */
export function appendRunEvent(
  storage: FleetStorage,
  caller: RunCaller,
  id: string,
  input: RunEventRequest,
  now = new Date(),
): { run: RunRecord; event: RunEventRecord } {
  return storage.transaction(() => {
    const run = getRun(storage, caller, id)
    const event = appendLocked(storage, run, input, now)
    return { run, event }
  })
}

/** Events with seq > after, ascending, at most `limit`. */
export function listRunEvents(storage: FleetStorage, runId: string, after: number, limit: number): RunEventRecord[] {
  return storage
    .all<{ record: string }>('SELECT record FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?', runId, after, limit)
    .map((row) => JSON.parse(row.record) as RunEventRecord)
}

/**
 * `GET /v1/runs`: newest first, one bounded page. Non-admins only ever see their own
 * owner+org runs whatever they ask for; admins filter by owner/org only when given.
 */
export function listRuns(storage: FleetStorage, caller: RunCaller, query: ListRunsQuery): { runs: RunRecord[]; nextCursor?: string } {
  const where: string[] = []
  const args: (string | number)[] = []
  const owner = caller.admin ? query.owner : caller.owner
  const org = caller.admin ? query.org : caller.org
  if (owner !== undefined) {
    where.push('owner = ?')
    args.push(owner)
  }
  if (org !== undefined) {
    where.push('org = ?')
    args.push(org)
  }
  if (query.leaseID !== undefined) {
    where.push('lease_id = ?')
    args.push(query.leaseID)
  }
  if (query.state !== undefined) {
    where.push('state = ?')
    args.push(query.state)
  }
  if (query.cursor !== undefined) {
    const cursor = decodeCursor(query.cursor)
    if (!cursor) throw new ApiError(400, 'invalid_cursor', 'cursor is not one this broker issued; list again without ?cursor=')
    where.push('(started_at < ? OR (started_at = ? AND id < ?))')
    args.push(cursor.time, cursor.time, cursor.id)
  }
  const sql = `SELECT record FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY started_at DESC, id DESC LIMIT ?`
  const rows = storage.all<{ record: string }>(sql, ...args, query.limit + 1)
  const runs = rows.slice(0, query.limit).map((row) => JSON.parse(row.record) as RunRecord)
  return rows.length > query.limit ? { runs, nextCursor: encodeCursor(runs.at(-1)!.startedAt, runs.at(-1)!.id) } : { runs }
}

/** `POST /v1/runs/{id}/telemetry`: one sanitised sample; `start` set once; last 60 kept. */
export function recordRunTelemetry(storage: FleetStorage, caller: RunCaller, id: string, raw: unknown, now = new Date()): RunRecord {
  const sample = sanitizeTelemetry(raw, now)
  if (!sample) throw new ApiError(400, 'invalid_telemetry', 'telemetry needs at least one numeric metric (load1, memoryPercent, ...)')
  return storage.transaction(() => {
    const run = getRun(storage, caller, id)
    const telemetry: RunTelemetry = run.telemetry ?? {}
    run.telemetry = {
      ...telemetry,
      start: telemetry.start ?? sample,
      samples: mergeTelemetrySeries(telemetry.samples ?? [], [sample]),
    }
    writeRun(storage, run)
    return run
  })
}

/** Splits text into pieces of at most `maxBytes` UTF-8 bytes, never inside a character. */
export function chunkUtf8(text: string, maxBytes: number): string[] {
  const chunks: string[] = []
  let start = 0
  let bytes = 0
  for (let i = 0; i < text.length;) {
    const code = text.codePointAt(i)!
    const width = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4
    const units = code >= 0x10000 ? 2 : 1
    if (bytes + width > maxBytes) {
      chunks.push(text.slice(start, i))
      start = i
      bytes = 0
    }
    bytes += width
    i += units
  }
  if (start < text.length) chunks.push(text.slice(start))
  return chunks
}

function mergeFinishTelemetry(
  existing: RunTelemetry | undefined,
  input: FinishRunRequest['telemetry'],
  now: Date,
): RunTelemetry | undefined {
  if (!input) return existing
  const start = sanitizeTelemetry(input.start, now)
  const end = sanitizeTelemetry(input.end, now)
  const samples = (input.samples ?? []).map((s) => sanitizeTelemetry(s, now)).filter((s): s is LeaseTelemetry => s !== undefined)
  if (!start && !end && samples.length === 0) return existing
  const merged: RunTelemetry = { ...existing, ...(start ? { start } : {}), ...(end ? { end } : {}) }
  const series = mergeTelemetrySeries(existing?.samples ?? [], samples)
  if (series.length) merged.samples = series
  return merged
}

/**
 * `POST /v1/runs/{id}/finish`: final state from the exit code, the last 8 MiB of the log in
 * 64 KiB chunks (old chunks replaced), then the `command.finished` event. Repeatable.
 */
export function finishRun(
  storage: FleetStorage,
  caller: RunCaller,
  id: string,
  input: FinishRunRequest,
  now = new Date(),
): { run: RunRecord; event: RunEventRecord } {
  const joined = input.logChunks.join('')
  const raw = joined === '' ? input.log : joined
  const rawBytes = utf8Length(raw)
  const log = rawBytes > RUN_LIMITS.logMaxBytes ? tailUtf8(raw, RUN_LIMITS.logMaxBytes) : raw
  const chunks = chunkUtf8(log, RUN_LIMITS.logChunkBytes)
  return storage.transaction(() => {
    const run = getRun(storage, caller, id)
    const state = input.exitCode === 0 ? 'succeeded' : 'failed'
    run.state = state
    run.phase = state
    run.exitCode = input.exitCode
    if (input.syncMs !== undefined) run.syncMs = input.syncMs
    if (input.commandMs !== undefined) run.commandMs = input.commandMs
    run.endedAt = now.toISOString()
    run.durationMs = Math.max(0, now.getTime() - Date.parse(run.startedAt))
    run.logBytes = Math.min(rawBytes, RUN_LIMITS.logMaxBytes)
    run.logTruncated = input.logTruncated || rawBytes > RUN_LIMITS.logMaxBytes
    if (input.results) run.results = input.results
    const telemetry = mergeFinishTelemetry(run.telemetry, input.telemetry, now)
    if (telemetry) run.telemetry = telemetry
    storage.run('DELETE FROM run_logs WHERE run_id = ?', id)
    chunks.forEach((chunk, idx) => storage.run('INSERT INTO run_logs (run_id, idx, chunk) VALUES (?, ?, ?)', id, idx, chunk))
    const event = appendLocked(storage, run, { type: 'command.finished', phase: state, exitCode: input.exitCode } as RunEventRequest, now)
    return { run, event }
  })
}

/**
 * Runs still `running` on a lease that has ended (expired: no CLI is left to
 * finish them) become `failed` with a `run.failed` event saying why, so
 * `attach` and `history` stop waiting for them. Call inside a transaction.
 */
export function closeRunsOfEndedLease(storage: FleetStorage, leaseId: string, reason: string, now: Date): number {
  const rows = storage.all<{ record: string }>(`SELECT record FROM runs WHERE lease_id = ? AND state = 'running'`, leaseId)
  for (const row of rows) {
    const run = JSON.parse(row.record) as RunRecord
    appendLocked(storage, run, { type: 'run.failed', phase: 'failed', message: `interrupted: ${reason}` } as RunEventRequest, now)
  }
  return rows.length
}

/** `GET /v1/runs/{id}/logs`: the retained log, chunks in order ("" before finish). */
export function readRunLog(storage: FleetStorage, caller: RunCaller, id: string): string {
  getRun(storage, caller, id)
  return storage
    .all<{ chunk: string }>('SELECT chunk FROM run_logs WHERE run_id = ? ORDER BY idx', id)
    .map((row) => row.chunk)
    .join('')
}

export interface PruneOptions {
  /** Runs that started before this instant are removed. */
  before: Date
  /** Row budget for one call (runs + events + log chunks), so an alarm step stays short. */
  maxRows?: number
}

export interface PruneResult {
  runs: number
  rows: number
  /** True when the budget ran out before every old run was gone; call again. */
  more: boolean
  /** `startedAt` of the oldest run kept, when `more` is false: the next prune is due after it ages out. */
  oldestKept?: string
}

/** Days of run history kept: `CRABBOX_RUN_RETENTION_DAYS` (positive integer), default 30. */
export function runRetentionDays(env: Record<string, unknown>): number {
  const days = Number(env.CRABBOX_RUN_RETENTION_DAYS)
  return Number.isInteger(days) && days > 0 ? days : 30
}

/**
 * Deletes runs older than `before` with their events and logs, spending at most `maxRows`
 * row deletions. Idempotent and safe to repeat (at-least-once alarms): a run row goes only
 * after its events and log chunks are gone, so an interrupted pass resumes cleanly.
 */
export function pruneRuns(storage: FleetStorage, options: PruneOptions): PruneResult {
  let budget = options.maxRows ?? 1000
  const cutoff = options.before.toISOString()
  let runs = 0
  let rows = 0
  return storage.transaction(() => {
    const candidates = storage.all<{ id: string }>(
      'SELECT id FROM runs WHERE started_at < ? ORDER BY started_at, id LIMIT ?',
      cutoff,
      budget,
    )
    for (const { id } of candidates) {
      if (budget <= 0) break
      for (const table of ['run_events', 'run_logs']) {
        const deleted = storage.all(
          `DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} WHERE run_id = ? LIMIT ?) RETURNING 1`,
          id,
          budget,
        ).length
        budget -= deleted
        rows += deleted
      }
      if (budget <= 0) break
      const left = storage.one<{ n: number }>(
        'SELECT (SELECT COUNT(*) FROM run_events WHERE run_id = ?) + (SELECT COUNT(*) FROM run_logs WHERE run_id = ?) AS n',
        id,
        id,
      )!.n
      if (left > 0) break
      storage.run('DELETE FROM runs WHERE id = ?', id)
      budget--
      rows++
      runs++
    }
    const oldest = storage.one<{ started_at: string }>('SELECT started_at FROM runs ORDER BY started_at LIMIT 1')?.started_at
    const more = oldest !== undefined && oldest < cutoff
    return oldest === undefined || more ? { runs, rows, more } : { runs, rows, more, oldestKept: oldest }
  })
}

const DAY_MS = 86_400_000
const SOON_MS = 1_000

/**
 * The alarm's retention step: prunes at most `budget` rows of runs older than the
 * retention window. Returns when the alarm should next call it (ms epoch), if ever.
 */
export function pruneRunHistory(storage: FleetStorage, env: Record<string, unknown>, now: Date, budget: number): { nextAt?: number } {
  const days = runRetentionDays(env)
  const result = pruneRuns(storage, { before: new Date(now.getTime() - days * DAY_MS), maxRows: budget })
  if (result.more) return { nextAt: now.getTime() + SOON_MS }
  return result.oldestKept ? { nextAt: Date.parse(result.oldestKept) + days * DAY_MS } : {}
}
