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
import { canSeeOwned, ownerClaimedColumn, withOwnerNamespace, type Identity } from '../auth/identity.js'
import { decodeCursor, encodeCursor, type FleetStorage } from './storage.js'

/**
 * Run history: records, numbered events and bounded logs, kept in the Fleet object's
 * SQLite tables. Every mutation is synchronous SQL inside one transaction, so two
 * requests can never interleave between reading `eventCount` and writing the next event.
 */

/** Who is asking (the identity the edge forwarded); only owner, org and admin matter here. */
export type RunCaller = Pick<Identity, 'owner' | 'org' | 'admin' | 'claimed'>

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

/** Per-owner quotas on run history (docs/security.md): running runs, runs started per hour, stored bytes. */
export const RUN_QUOTAS = {
  activeRuns: 100,
  runsPerHour: 200,
  storedBytes: 64 * 1024 * 1024,
} as const

/** An event page (`GET …/events`) and a control `run_events` frame stay under this many bytes, serialized. */
export const EVENT_PAGE_BYTES = 1024 * 1024

/** Results (the JUnit summary) are refused past this many serialized bytes; the finish still keeps the log. */
export const RESULTS_MAX_BYTES = 4 * 1024 * 1024

/** Bulky run fields are stored apart from the run row, in pieces well under SQLite's 2 MB row limit. */
const BLOB_CHUNK_BYTES = 512 * 1024
const BLOB_KINDS = ['command', 'results', 'telemetry'] as const
type BlobKind = (typeof BLOB_KINDS)[number]

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

/**
 * Second step: the run row keeps only small fields and counters (so an append rewrites a
 * small row), command/results/telemetry move to `run_blobs`, event text is stored as sent
 * in its own columns (not JSON-escaped), and stored bytes are counted per run and per owner.
 */
export const RUN_SCHEMA_V2 = [
  'ALTER TABLE runs ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0',
  'ALTER TABLE run_events ADD COLUMN message TEXT',
  'ALTER TABLE run_events ADD COLUMN data TEXT',
  `CREATE TABLE IF NOT EXISTS run_blobs (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    chunk TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, idx)
  )`,
  'CREATE TABLE IF NOT EXISTS run_owner_usage (owner TEXT PRIMARY KEY, stored_bytes INTEGER NOT NULL)',
  'CREATE INDEX IF NOT EXISTS runs_by_owner_state ON runs (owner, state)',
  'CREATE INDEX IF NOT EXISTS runs_by_owner_start ON runs (owner, started_at)',
  ...BLOB_KINDS.map(
    (kind) => `INSERT INTO run_blobs (run_id, kind, idx, chunk)
      SELECT id, '${kind}', 0, json_extract(record, '$.${kind}') FROM runs WHERE json_type(record, '$.${kind}') IN ('object', 'array')`,
  ),
  `UPDATE runs SET record = json_remove(record, '$.command', '$.results', '$.telemetry')`,
  `UPDATE runs SET stored_bytes =
    (SELECT COALESCE(SUM(length(CAST(record AS BLOB))), 0) FROM run_events WHERE run_id = runs.id) +
    (SELECT COALESCE(SUM(length(CAST(chunk AS BLOB))), 0) FROM run_logs WHERE run_id = runs.id) +
    (SELECT COALESCE(SUM(length(CAST(chunk AS BLOB))), 0) FROM run_blobs WHERE run_id = runs.id)`,
  'INSERT INTO run_owner_usage (owner, stored_bytes) SELECT owner, SUM(stored_bytes) FROM runs GROUP BY owner',
]

/** Whose namespace a run is in (1: an owner named by header under the shared token); older runs count as verified. */
export const RUN_IDENTITY_SCHEMA = ['ALTER TABLE runs ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0']

/** What the run row holds: the record without its bulky fields (those live in `run_blobs`). */
export type RunCore = Omit<RunRecord, BlobKind>

const notFound = () => new ApiError(404, 'not_found', 'run not found')
const quotaExceeded = (status: 413 | 429, message: string) => new ApiError(status, 'quota_exceeded', message)

export const canSeeRun = (caller: RunCaller, run: Pick<RunRecord, 'owner' | 'org'>): boolean => canSeeOwned(run, caller as Identity)

function readCore(storage: FleetStorage, id: string): RunCore | undefined {
  const row = storage.one<{ record: string; claimed: number }>('SELECT record, claimed FROM runs WHERE id = ?', id)
  return row ? withOwnerNamespace(JSON.parse(row.record) as RunCore, row.claimed) : undefined
}

/** The whole record: the row plus its blobs (command, results, telemetry). */
function withBlobs(storage: FleetStorage, core: RunCore): RunRecord {
  const pieces: Partial<Record<BlobKind, string[]>> = {}
  for (const row of storage.all<{ kind: BlobKind; chunk: string }>(
    'SELECT kind, chunk FROM run_blobs WHERE run_id = ? ORDER BY kind, idx',
    core.id,
  ))
    (pieces[row.kind] ??= []).push(row.chunk)
  const blobs = Object.fromEntries(Object.entries(pieces).map(([kind, chunks]) => [kind, JSON.parse(chunks.join(''))]))
  const run = { ...core, ...blobs } as RunRecord
  run.command ??= []
  return run
}

/** Replaces one blob of a run; returns the bytes it now takes. */
function writeBlob(storage: FleetStorage, runId: string, kind: BlobKind, value: unknown): number {
  storage.run('DELETE FROM run_blobs WHERE run_id = ? AND kind = ?', runId, kind)
  if (value === undefined) return 0
  const text = JSON.stringify(value)
  chunkUtf8(text, BLOB_CHUNK_BYTES).forEach((chunk, idx) =>
    storage.run('INSERT INTO run_blobs (run_id, kind, idx, chunk) VALUES (?, ?, ?, ?)', runId, kind, idx, chunk),
  )
  return utf8Length(text)
}

function blobBytes(storage: FleetStorage, runId: string, kind: BlobKind): number {
  return storage.one<{ n: number }>(
    'SELECT COALESCE(SUM(length(CAST(chunk AS BLOB))), 0) AS n FROM run_blobs WHERE run_id = ? AND kind = ?',
    runId,
    kind,
  )!.n
}

function coreOf(run: RunRecord | RunCore): RunCore {
  const { command: _c, results: _r, telemetry: _t, ...core } = run as RunRecord
  return core
}

/** Writes the run row (small: no blobs) and counts `addBytes` more stored bytes for the run and its owner. */
function writeCore(storage: FleetStorage, run: RunRecord | RunCore, addBytes = 0): void {
  storage.run(
    `INSERT INTO runs (id, owner, org, lease_id, state, started_at, record, stored_bytes, claimed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (id) DO UPDATE SET lease_id = excluded.lease_id, state = excluded.state, record = excluded.record,
       stored_bytes = runs.stored_bytes + excluded.stored_bytes`,
    run.id,
    run.owner,
    run.org,
    run.leaseID,
    run.state,
    run.startedAt,
    JSON.stringify(coreOf(run)),
    addBytes,
    ownerClaimedColumn(run),
  )
  if (addBytes !== 0) addOwnerBytes(storage, quotaOwner(run), addBytes)
}

/**
 * Whose quota a run counts against: a claimed (header-named) owner never spends the quota of
 * the verified owner with the same name, nor the reverse.
 */
const quotaOwner = (run: { owner: string }): string => (ownerClaimedColumn(run) ? `claimed:${run.owner}` : run.owner)

function addOwnerBytes(storage: FleetStorage, owner: string, bytes: number): void {
  storage.run(
    `INSERT INTO run_owner_usage (owner, stored_bytes) VALUES (?, ?)
     ON CONFLICT (owner) DO UPDATE SET stored_bytes = MAX(0, stored_bytes + excluded.stored_bytes)`,
    owner,
    bytes,
  )
}

/** Bytes of run history (events, logs, results) an owner keeps now. */
export function ownerStoredBytes(storage: FleetStorage, owner: string): number {
  return storage.one<{ n: number }>('SELECT stored_bytes AS n FROM run_owner_usage WHERE owner = ?', owner)?.n ?? 0
}

/** Refuses a new run past the owner's quotas (429 for counts, 413 for stored bytes). */
function checkCreateQuotas(storage: FleetStorage, run: RunCore, now: Date): void {
  const owner = run.owner
  const claimed = ownerClaimedColumn(run)
  if (ownerStoredBytes(storage, quotaOwner(run)) >= RUN_QUOTAS.storedBytes)
    throw quotaExceeded(413, `an owner keeps at most ${RUN_QUOTAS.storedBytes / 1024 / 1024} MiB of run history; older runs age out`)
  const running = storage.one<{ n: number }>(
    "SELECT COUNT(*) AS n FROM runs WHERE owner = ? AND claimed = ? AND state = 'running'",
    owner,
    claimed,
  )!.n
  if (running >= RUN_QUOTAS.activeRuns)
    throw quotaExceeded(429, `an owner may have at most ${RUN_QUOTAS.activeRuns} running runs; finish some first`)
  const hourAgo = new Date(now.getTime() - 3_600_000).toISOString()
  const recent = storage.one<{ n: number }>(
    'SELECT COUNT(*) AS n FROM runs WHERE owner = ? AND claimed = ? AND started_at > ?',
    owner,
    claimed,
    hourAgo,
  )!.n
  if (recent >= RUN_QUOTAS.runsPerHour) throw quotaExceeded(429, `an owner may start at most ${RUN_QUOTAS.runsPerHour} runs per hour`)
}

/** Run by ID if the caller may see it; missing and invisible look the same (404). */
export function getRun(storage: FleetStorage, caller: RunCaller, id: string): RunRecord {
  return withBlobs(storage, getRunCore(storage, caller, id))
}

/** The run's row (no command, results, telemetry) if the caller may see it; 404 otherwise. */
export function getRunCore(storage: FleetStorage, caller: RunCaller, id: string): RunCore {
  const run = readCore(storage, id)
  if (!run || !canSeeRun(caller, run)) throw notFound()
  return run
}

/** Run by ID without a visibility check, for pushes that check per socket (the row only: no command, results, telemetry). */
export function peekRun(storage: FleetStorage, id: string): RunCore | undefined {
  return readCore(storage, id)
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

interface EventRow extends Record<string, SqlStorageValue> {
  record: string
  message: string | null
  data: string | null
}

/** An event as stored: text in its own columns, as sent; the rest (small, bounded fields) as JSON. */
function eventFromRow(row: EventRow): RunEventRecord {
  const event = JSON.parse(row.record) as RunEventRecord
  if (row.message !== null) event.message = row.message
  if (row.data !== null) event.data = row.data
  return event
}

/**
 * Appends inside the caller's transaction: seq = eventCount + 1, then the run summary (phase, lease fields, state
 * on `run.failed`). `quota` refuses the event past the owner's stored bytes (the broker's own events skip it).
 */
function appendLocked(storage: FleetStorage, run: RunCore, input: RunEventRequest, now: Date, quota = false): RunEventRecord {
  const seq = (run.eventCount ?? 0) + 1
  if (seq > MAX_EVENTS_PER_RUN) throw new ApiError(413, 'run_event_limit', `a run keeps at most ${MAX_EVENTS_PER_RUN} events`)
  const createdAt = now.toISOString()
  const event = { runID: run.id, seq, ...dropUndefined(input), createdAt } as RunEventRecord
  const { message, data, ...rest } = event
  const record = JSON.stringify(rest)
  const bytes = utf8Length(record) + utf8Length(message ?? '') + utf8Length(data ?? '')
  if (quota && ownerStoredBytes(storage, quotaOwner(run)) + bytes > RUN_QUOTAS.storedBytes)
    throw quotaExceeded(413, `an owner keeps at most ${RUN_QUOTAS.storedBytes / 1024 / 1024} MiB of run history; older runs age out`)
  storage.run(
    'INSERT INTO run_events (run_id, seq, record, message, data) VALUES (?, ?, ?, ?, ?)',
    run.id,
    seq,
    record,
    message ?? null,
    data ?? null,
  )

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
  writeCore(storage, run, bytes)
  return event
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

export interface CreatedRun {
  run: RunRecord
  event: RunEventRecord
}

/** `POST /v1/runs`: a running run whose first event (seq 1) is `run.started`; refused past the owner's quotas. */
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
  withOwnerNamespace(run, caller.claimed)
  return storage.transaction(() => {
    const core = coreOf(run)
    checkCreateQuotas(storage, core, now)
    writeCore(storage, core, run.command.length ? writeBlob(storage, run.id, 'command', run.command) : 0)
    const event = appendLocked(storage, core, { type: 'run.started', phase: 'starting' } as RunEventRequest, now)
    return { run: { ...core, command: run.command }, event }
  })
}

const pick = (slug: string | undefined) => (slug ? { slug } : {})

/**
 * `POST /v1/runs/{id}/events`: numbered atomically; works after finish too. Touches only the
 * small run row (counters), never the run's results or telemetry. Returns the run's row.
 */
export function appendRunEvent(
  storage: FleetStorage,
  caller: RunCaller,
  id: string,
  input: RunEventRequest,
  now = new Date(),
): { run: RunCore; event: RunEventRecord } {
  return storage.transaction(() => {
    const run = getRunCore(storage, caller, id)
    const event = appendLocked(storage, run, input, now, true)
    return { run, event }
  })
}

/** Events with seq > after, ascending, at most `limit` (no byte bound: see `pageRunEvents`). */
export function listRunEvents(storage: FleetStorage, runId: string, after: number, limit: number): RunEventRecord[] {
  return pageRunEvents(storage, runId, after, limit, Number.POSITIVE_INFINITY).events
}

/** Rows read per query while paging by bytes (a row is at most ~200 KiB serialized). */
const PAGE_BATCH = 16

/**
 * Events with seq > after, ascending, at most `limit` and at most `maxBytes` serialized
 * (JSON, as sent; the first event always comes, whatever its size). `more` is true when the
 * page stopped at the byte bound with events left in `limit`: continue after the last seq.
 */
export function pageRunEvents(
  storage: FleetStorage,
  runId: string,
  after: number,
  limit: number,
  maxBytes = EVENT_PAGE_BYTES,
): { events: RunEventRecord[]; more: boolean } {
  const events: RunEventRecord[] = []
  let bytes = 0
  let cursor = after
  while (events.length < limit) {
    const batch = Math.min(PAGE_BATCH, limit - events.length)
    const rows = storage.all<EventRow>(
      'SELECT seq, record, message, data FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?',
      runId,
      cursor,
      batch,
    )
    for (const row of rows) {
      const event = eventFromRow(row)
      const size = utf8Length(JSON.stringify(event)) + 1
      if (events.length > 0 && bytes + size > maxBytes) return { events, more: true }
      events.push(event)
      bytes += size
      cursor = event.seq
    }
    if (rows.length < batch) break
  }
  return { events, more: false }
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
  if (!caller.admin) {
    where.push('claimed = ?')
    args.push(caller.claimed ? 1 : 0)
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
  const sql = `SELECT record, claimed FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY started_at DESC, id DESC LIMIT ?`
  const rows = storage.all<{ record: string; claimed: number }>(sql, ...args, query.limit + 1)
  const runs = rows
    .slice(0, query.limit)
    .map((row) => withBlobs(storage, withOwnerNamespace(JSON.parse(row.record) as RunCore, row.claimed)))
  return rows.length > query.limit ? { runs, nextCursor: encodeCursor(runs.at(-1)!.startedAt, runs.at(-1)!.id) } : { runs }
}

function readBlob<T>(storage: FleetStorage, runId: string, kind: BlobKind): T | undefined {
  const chunks = storage.all<{ chunk: string }>('SELECT chunk FROM run_blobs WHERE run_id = ? AND kind = ? ORDER BY idx', runId, kind)
  return chunks.length ? (JSON.parse(chunks.map((row) => row.chunk).join('')) as T) : undefined
}

/** `POST /v1/runs/{id}/telemetry`: one sanitised sample; `start` set once; last 60 kept. */
export function recordRunTelemetry(storage: FleetStorage, caller: RunCaller, id: string, raw: unknown, now = new Date()): RunRecord {
  const sample = sanitizeTelemetry(raw, now)
  if (!sample) throw new ApiError(400, 'invalid_telemetry', 'telemetry needs at least one numeric metric (load1, memoryPercent, ...)')
  return storage.transaction(() => {
    const core = getRunCore(storage, caller, id)
    const telemetry: RunTelemetry = readBlob<RunTelemetry>(storage, id, 'telemetry') ?? {}
    writeBlob(storage, id, 'telemetry', {
      ...telemetry,
      start: telemetry.start ?? sample,
      samples: mergeTelemetrySeries(telemetry.samples ?? [], [sample]),
    })
    return withBlobs(storage, core)
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

export interface FinishedRun {
  run: RunRecord
  event: RunEventRecord
  /** Set when the results were not stored (too large, or past the owner's quota): the run finished and kept its log anyway. */
  refused?: ApiError
}

/** Stores `results` unless too large or past the owner's room; returns the bytes added, or the refusal. */
function storeResults(storage: FleetStorage, id: string, results: FinishRunRequest['results'], room: number): number | ApiError {
  if (!results) return 0
  const bytes = utf8Length(JSON.stringify(results))
  if (bytes > RESULTS_MAX_BYTES)
    return new ApiError(
      413,
      'results_too_large',
      `results serialize to ${bytes} bytes, over the ${RESULTS_MAX_BYTES} bytes kept; the run finished and kept its log without them`,
    )
  const old = blobBytes(storage, id, 'results')
  if (bytes - old > room)
    return quotaExceeded(413, "results would pass the owner's stored run history quota; the run finished and kept its log without them")
  return writeBlob(storage, id, 'results', results) - old
}

/**
 * `POST /v1/runs/{id}/finish`: final state from the exit code, the last 8 MiB of the log in
 * 64 KiB chunks (old chunks replaced; cut to the owner's remaining quota), results stored apart
 * (or refused, never losing the log), then the `command.finished` event. Repeatable.
 */
export function finishRun(storage: FleetStorage, caller: RunCaller, id: string, input: FinishRunRequest, now = new Date()): FinishedRun {
  const joined = input.logChunks.join('')
  const raw = joined === '' ? input.log : joined
  const rawBytes = utf8Length(raw)
  return storage.transaction(() => {
    const run = getRunCore(storage, caller, id)
    const oldLog = storage.one<{ n: number }>(
      'SELECT COALESCE(SUM(length(CAST(chunk AS BLOB))), 0) AS n FROM run_logs WHERE run_id = ?',
      id,
    )!.n
    const used = ownerStoredBytes(storage, quotaOwner(run)) - oldLog
    const keep = Math.min(RUN_LIMITS.logMaxBytes, Math.max(0, RUN_QUOTAS.storedBytes - used))
    const log = rawBytes > keep ? tailUtf8(raw, keep) : raw
    const logBytes = utf8Length(log)
    const state = input.exitCode === 0 ? 'succeeded' : 'failed'
    run.state = state
    run.phase = state
    run.exitCode = input.exitCode
    if (input.syncMs !== undefined) run.syncMs = input.syncMs
    if (input.commandMs !== undefined) run.commandMs = input.commandMs
    run.endedAt = now.toISOString()
    run.durationMs = Math.max(0, now.getTime() - Date.parse(run.startedAt))
    run.logBytes = Math.min(rawBytes, keep)
    run.logTruncated = input.logTruncated || rawBytes > keep
    storage.run('DELETE FROM run_logs WHERE run_id = ?', id)
    chunkUtf8(log, RUN_LIMITS.logChunkBytes).forEach((chunk, idx) =>
      storage.run('INSERT INTO run_logs (run_id, idx, chunk) VALUES (?, ?, ?)', id, idx, chunk),
    )
    const stored = storeResults(storage, id, input.results, RUN_QUOTAS.storedBytes - used - logBytes)
    const telemetry = mergeFinishTelemetry(readBlob<RunTelemetry>(storage, id, 'telemetry'), input.telemetry, now)
    if (telemetry && input.telemetry) writeBlob(storage, id, 'telemetry', telemetry)
    writeCore(storage, run, logBytes - oldLog + (typeof stored === 'number' ? stored : 0))
    const event = appendLocked(storage, run, { type: 'command.finished', phase: state, exitCode: input.exitCode } as RunEventRequest, now)
    return { run: withBlobs(storage, run), event, ...(typeof stored === 'number' ? {} : { refused: stored }) }
  })
}

/**
 * Runs still `running` on a lease that has ended (expired: no CLI is left to
 * finish them) become `failed` with a `run.failed` event saying why, so
 * `attach` and `history` stop waiting for them. Call inside a transaction.
 */
export function closeRunsOfEndedLease(storage: FleetStorage, leaseId: string, reason: string, now: Date): number {
  const rows = storage.all<{ record: string; claimed: number }>(
    `SELECT record, claimed FROM runs WHERE lease_id = ? AND state = 'running'`,
    leaseId,
  )
  for (const row of rows) {
    const run = withOwnerNamespace(JSON.parse(row.record) as RunCore, row.claimed)
    appendLocked(storage, run, { type: 'run.failed', phase: 'failed', message: `interrupted: ${reason}` } as RunEventRequest, now)
  }
  return rows.length
}

/** `GET /v1/runs/{id}/logs`: the retained log, chunks in order ("" before finish). */
export function readRunLog(storage: FleetStorage, caller: RunCaller, id: string): string {
  getRunCore(storage, caller, id)
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
 * Deletes runs older than `before` with their events, logs and blobs (giving their bytes back
 * to the owner's quota), spending at most `maxRows`
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
      for (const table of ['run_events', 'run_logs', 'run_blobs']) {
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
        `SELECT (SELECT COUNT(*) FROM run_events WHERE run_id = ?) + (SELECT COUNT(*) FROM run_logs WHERE run_id = ?)
           + (SELECT COUNT(*) FROM run_blobs WHERE run_id = ?) AS n`,
        id,
        id,
        id,
      )!.n
      if (left > 0) break
      const gone = storage.one<{ owner: string; claimed: number; stored_bytes: number }>(
        'DELETE FROM runs WHERE id = ? RETURNING owner, claimed, stored_bytes',
        id,
      )
      if (gone?.stored_bytes)
        addOwnerBytes(storage, quotaOwner(withOwnerNamespace({ owner: gone.owner }, gone.claimed)), -gone.stored_bytes)
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
