import { isLeaseId, normalizeSlug } from '../../src/protocol/ids.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { LEASE_LIST_DEFAULT_LIMIT, LIVE_LEASE_STATES, type LeaseListQuery, type LeaseRecord } from '../../src/protocol/leases.js'
import { canManageLease, leaseRole, ownerClaimedColumn, withOwnerNamespace, type Identity } from '../auth/identity.js'
import { setting, type Env } from '../env.js'
import { decodeCursor, encodeCursor, type FleetStorage } from './storage.js'

/**
 * The lease store: one `leases` table (the record JSON is the wire shape, the
 * columns beside it are what queries filter on) and `lease_shares`, plus the
 * reads every lease module shares: by ID, by slug, lists, and the expiry math.
 */

/** The SQL condition of a live lease (provisioning or active); expiry, caps, usage and slugs use it. */
export const LIVE_LEASE_SQL = `state IN (${LIVE_LEASE_STATES.map((s) => `'${s}'`).join(',')})`

export const LEASE_SCHEMA = [
  `CREATE TABLE leases (
     id TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     org TEXT NOT NULL,
     state TEXT NOT NULL,
     slug TEXT NOT NULL,
     provider TEXT NOT NULL,
     created_at TEXT NOT NULL,
     expires_at TEXT NOT NULL,
     month TEXT NOT NULL,
     reserved_usd REAL NOT NULL DEFAULT 0,
     machine TEXT,
     cleanup_at INTEGER,
     cleanup_attempts INTEGER NOT NULL DEFAULT 0,
     cleanup_error TEXT,
     record TEXT NOT NULL
   )`,
  'CREATE INDEX leases_by_created ON leases (created_at DESC, id DESC)',
  'CREATE INDEX leases_by_owner ON leases (owner, org, created_at DESC, id DESC)',
  'CREATE INDEX leases_by_month ON leases (month, owner, org)',
  // The index of live leases: expiry, caps and slug checks read only this.
  `CREATE INDEX leases_live ON leases (expires_at) WHERE ${LIVE_LEASE_SQL}`,
  `CREATE INDEX leases_live_slug ON leases (slug) WHERE ${LIVE_LEASE_SQL}`,
  'CREATE INDEX leases_cleanup ON leases (cleanup_at) WHERE cleanup_at IS NOT NULL',
  `CREATE TABLE lease_shares (
     lease_id TEXT NOT NULL,
     principal TEXT NOT NULL,
     role TEXT NOT NULL,
     PRIMARY KEY (lease_id, principal)
   )`,
  'CREATE INDEX lease_shares_by_principal ON lease_shares (principal, lease_id)',
]

/**
 * Whose namespace a lease is in (`claimed` = 1: an owner named by header under the shared
 * token) and which credential made it (per-credential caps). Leases from before it count
 * as verified: a header can no longer claim them.
 */
export const LEASE_IDENTITY_SCHEMA = [
  'ALTER TABLE leases ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0',
  'ALTER TABLE leases ADD COLUMN credential TEXT',
]

export const MAX_LEASE_SECONDS = 86_400
/** The default of `CRABBOX_MIN_LEASE_SECONDS` (see minLeaseSeconds). */
export const MIN_LEASE_SECONDS = 60
export const DEFAULT_TTL_SECONDS = 5_400
export const DEFAULT_IDLE_SECONDS = 1_800
export type LeaseRow = {
  id: string
  owner: string
  org: string
  state: string
  record: string
  machine: string | null
  provider: string
  cleanup_at: number | null
  cleanup_attempts: number
}

/** Machine details kept for deletion; never on the wire. */
export interface MachineRef {
  id: string
  name: string
  labels: Record<string, string>
  /** Where an AWS instance lives, so deletion can go by ID (tag searches lag behind launches). */
  region?: string
}

/** A lease row's record, marked with its owner's namespace (select `record, claimed`). */
export const parseRecord = (row: { record: string; claimed: number }): LeaseRecord =>
  withOwnerNamespace(JSON.parse(row.record) as LeaseRecord, row.claimed)

export function getLeaseRecord(storage: FleetStorage, id: string): LeaseRecord | undefined {
  const row = storage.one<{ record: string; claimed: number }>('SELECT record, claimed FROM leases WHERE id = ?', id)
  return row ? parseRecord(row) : undefined
}

/** Writes the record and the columns derived from it. */
export function saveRecord(storage: FleetStorage, lease: LeaseRecord): void {
  storage.run(
    'UPDATE leases SET state = ?, slug = ?, expires_at = ?, reserved_usd = ?, record = ? WHERE id = ?',
    lease.state,
    lease.slug,
    lease.expiresAt,
    lease.maxEstimatedUSD ?? 0,
    JSON.stringify(lease),
    lease.id,
  )
}

/** Inserts a new lease record (marked with its namespace) with its derived columns and the credential that made it. */
export function insertLease(storage: FleetStorage, lease: LeaseRecord, month: string, credential: string): void {
  storage.run(
    `INSERT INTO leases (id, owner, org, state, slug, provider, created_at, expires_at, month, reserved_usd, record, claimed, credential)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    lease.id,
    lease.owner,
    lease.org,
    lease.state,
    lease.slug,
    lease.provider,
    lease.createdAt,
    lease.expiresAt,
    month,
    lease.maxEstimatedUSD ?? 0,
    JSON.stringify(lease),
    ownerClaimedColumn(lease),
    credential || null,
  )
}

/** Queues a lease's machine for deletion at `at` (ms epoch), unless it is queued already. */
export function queueCleanup(storage: FleetStorage, leaseId: string, at: number): void {
  storage.run('UPDATE leases SET cleanup_at = ? WHERE id = ? AND cleanup_at IS NULL', at, leaseId)
}

/** In-flight creates per object, so a retried create waits for the first one instead of provisioning twice. */
const inflight = new WeakMap<FleetStorage, Map<string, Promise<LeaseRecord>>>()

export function inflightFor(storage: FleetStorage): Map<string, Promise<LeaseRecord>> {
  let map = inflight.get(storage)
  if (!map) inflight.set(storage, (map = new Map()))
  return map
}

// ---- expiry math ------------------------------------------------------------------

/**
 * The shortest TTL or idle timeout a lease gets (`CRABBOX_MIN_LEASE_SECONDS`, default
 * 60, at least 1): shorter positive values are raised to it.
 */
export function minLeaseSeconds(env: Env): number {
  const raw = Number(setting(env, 'CRABBOX_MIN_LEASE_SECONDS'))
  return Number.isFinite(raw) && raw >= 1 ? Math.min(Math.trunc(raw), MAX_LEASE_SECONDS) : MIN_LEASE_SECONDS
}

/**
 * Clamps a TTL or idle timeout in seconds: non-finite or ≤ 0 → default; truncated;
 * within [min, 86400]. The floor matters: a fraction like 0.4 would truncate to 0,
 * which `computeExpiresAt` reads as "no idle timeout".
 */
export function clampSeconds(value: number | undefined, fallback: number, min = MIN_LEASE_SECONDS): number {
  if (value === undefined || !Number.isFinite(value) || value <= 0) return fallback
  return Math.min(Math.max(Math.trunc(value), min, 1), MAX_LEASE_SECONDS)
}

/** `min(createdAt + ttl, lastTouchedAt + idle)`: heartbeats never push past the TTL. */
export function computeExpiresAt(lease: Pick<LeaseRecord, 'createdAt' | 'lastTouchedAt' | 'ttlSeconds' | 'idleTimeoutSeconds'>): string {
  const created = Date.parse(lease.createdAt)
  const touched = Date.parse(lease.lastTouchedAt)
  const ttl = Math.max(1, lease.ttlSeconds) * 1000
  const idle = Math.max(1, lease.idleTimeoutSeconds > 0 ? lease.idleTimeoutSeconds : lease.ttlSeconds) * 1000
  return new Date(Math.min(created + ttl, (Number.isFinite(touched) ? touched : created) + idle)).toISOString()
}

// ---- resolution and visibility ----------------------------------------------------

/**
 * The SQL condition of the leases `identity` may see (leaseRole's rule: own, shared with
 * the caller or the caller's org, or admin), for queries that must filter before a LIMIT.
 */
function visibleSql(identity: Identity): { sql: string; bindings: unknown[] } {
  if (identity.admin) return { sql: '1', bindings: [] }
  // Only the caller's namespace: a claimed owner never sees a verified one's leases or shares, nor the reverse.
  return {
    sql: 'claimed = ? AND ((owner = ? AND org = ?) OR id IN (SELECT lease_id FROM lease_shares WHERE principal IN (?, ?)))',
    bindings: [
      identity.claimed ? 1 : 0,
      identity.owner,
      identity.org,
      `user:${identity.owner.trim().toLowerCase()}`,
      `org:${identity.org}`,
    ],
  }
}

/**
 * A lease by exact ID (any state) or by slug (active, unexpired). Not visible and
 * missing are the same 404; a slug matching several visible leases is 409.
 */
export function resolveLease(storage: FleetStorage, identity: Identity, ref: string, now: Date): LeaseRecord {
  const notFound = () => new ApiError(404, ErrorCode.notFound, `lease ${ref} not found`)
  const exact = getLeaseRecord(storage, ref)
  if (exact) {
    if (!leaseRole(exact, identity)) throw notFound()
    return exact
  }
  const slug = normalizeSlug(ref)
  if (!slug || isLeaseId(ref)) throw notFound()
  // Visibility is in the query, before the limit: other owners' leases with this slug never crowd out the caller's.
  const visible = visibleSql(identity)
  const candidates = storage
    .all<{ record: string; claimed: number }>(
      `SELECT record, claimed FROM leases WHERE slug = ? AND ${LIVE_LEASE_SQL} AND state = 'active' AND expires_at > ? AND ${visible.sql}
       ORDER BY created_at DESC, id DESC LIMIT 50`,
      slug,
      now.toISOString(),
      ...visible.bindings,
    )
    .map(parseRecord)
    .filter((lease) => leaseRole(lease, identity))
  if (!candidates.length) throw notFound()
  if (candidates.length > 1) {
    throw new ApiError(
      409,
      ErrorCode.ambiguousSlug,
      `slug ${slug} matches ${candidates.length} leases (${candidates.map((l) => `${l.id}:${l.owner}`).join(', ')}); use a lease ID`,
    )
  }
  return candidates[0]
}

export function requireManage(lease: LeaseRecord, identity: Identity): void {
  if (!canManageLease(lease, identity)) throw new ApiError(403, ErrorCode.forbidden, 'lease manage access required')
}

// ---- list -------------------------------------------------------------------------

export interface LeasePage {
  leases: LeaseRecord[]
  nextCursor?: string
}

/**
 * Newest first. Filters and visibility are applied in the query, before the
 * limit (filtering after it would return short pages), so a page is
 * full unless it is the last.
 */
export function listLeases(storage: FleetStorage, identity: Identity, query: LeaseListQuery): LeasePage {
  const limit = query.limit ?? LEASE_LIST_DEFAULT_LIMIT
  const where: string[] = []
  const bindings: unknown[] = []
  if (query.state) {
    where.push('state = ?')
    bindings.push(query.state)
  }
  if (query.owner) {
    where.push('owner = ?')
    bindings.push(query.owner)
  }
  if (query.org) {
    where.push('org = ?')
    bindings.push(query.org)
  }
  if (query.cursor) {
    const cursor = decodeCursor(query.cursor)
    if (!cursor) throw new ApiError(400, ErrorCode.invalidRequest, 'invalid query: cursor: pass back the nextCursor of a previous page')
    where.push('(created_at < ? OR (created_at = ? AND id < ?))')
    bindings.push(cursor.time, cursor.time, cursor.id)
  }
  if (!identity.admin) {
    const visible = visibleSql(identity)
    where.push(visible.sql)
    bindings.push(...visible.bindings)
  }
  const rows = storage.all<{ record: string; claimed: number; created_at: string; id: string }>(
    `SELECT record, claimed, created_at, id FROM leases ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ?`,
    ...bindings,
    limit + 1,
  )
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return { leases: page.map(parseRecord), ...(rows.length > limit && last ? { nextCursor: encodeCursor(last.created_at, last.id) } : {}) }
}

/** Live leases (provisioning or active), oldest expiry first, bounded. For usage and control modules. */
export function liveLeases(storage: FleetStorage, limit: number): LeaseRecord[] {
  return storage
    .all<{ record: string; claimed: number }>(
      `SELECT record, claimed FROM leases WHERE ${LIVE_LEASE_SQL} ORDER BY expires_at LIMIT ?`,
      limit,
    )
    .map(parseRecord)
}

// ---- the portal's lease grid ---------------------------------------------------------

/** Columns the portal's lease grid sorts by. */
export const LEASE_GRID_SORTS = {
  created: 'created_at',
  expires: 'expires_at',
  slug: 'slug',
  owner: 'owner',
  state: 'state',
  provider: 'provider',
} as const

export interface LeaseGridQuery {
  /** `live`: provisioning or active; `ended`: anything else; absent: all. */
  state?: 'live' | 'ended'
  /** Only the caller's own leases. */
  mine?: boolean
  /** Admins: leases no person owns (owner `unknown`, from a token that named nobody). */
  system?: boolean
  provider?: string
  target?: string
  /** Matched against ID, slug, owner and host (case-insensitive substring). */
  search?: string
  sort: keyof typeof LEASE_GRID_SORTS
  dir: 'asc' | 'desc'
  offset: number
  limit: number
}

/**
 * One page of the leases `identity` may see (the same rule as every lease route), with
 * the portal's filters, sort and offset applied in the query, and the total for paging.
 */
export function leaseGrid(storage: FleetStorage, identity: Identity, query: LeaseGridQuery): { leases: LeaseRecord[]; total: number } {
  const where: string[] = []
  const bindings: unknown[] = []
  if (query.state === 'live') where.push(LIVE_LEASE_SQL)
  if (query.state === 'ended') where.push(`NOT (${LIVE_LEASE_SQL})`)
  if (query.mine) {
    where.push('owner = ? AND org = ? AND claimed = ?')
    bindings.push(identity.owner, identity.org, identity.claimed ? 1 : 0)
  }
  if (query.system) where.push(`owner = 'unknown'`)
  if (query.provider) {
    where.push('provider = ?')
    bindings.push(query.provider)
  }
  if (query.target) {
    where.push("json_extract(record, '$.target') = ?")
    bindings.push(query.target)
  }
  if (query.search) {
    const like = `%${query.search.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`
    where.push(
      "(lower(id) LIKE ? ESCAPE '\\' OR lower(slug) LIKE ? ESCAPE '\\' OR lower(owner) LIKE ? ESCAPE '\\' OR lower(coalesce(json_extract(record, '$.host'), '')) LIKE ? ESCAPE '\\')",
    )
    bindings.push(like, like, like, like)
  }
  if (!identity.admin) {
    const visible = visibleSql(identity)
    where.push(visible.sql)
    bindings.push(...visible.bindings)
  }
  const clause = where.length ? `WHERE ${where.join(' AND ')}` : ''
  const column = LEASE_GRID_SORTS[query.sort]
  const dir = query.dir === 'asc' ? 'ASC' : 'DESC'
  const total = storage.one<{ n: number }>(`SELECT COUNT(*) AS n FROM leases ${clause}`, ...bindings)!.n
  const rows = storage.all<{ record: string; claimed: number }>(
    `SELECT record, claimed FROM leases ${clause} ORDER BY ${column} ${dir}, id ${dir} LIMIT ? OFFSET ?`,
    ...bindings,
    query.limit,
    query.offset,
  )
  // The same role check as every route, after the query: a record outside the caller's namespace never shows.
  return { leases: rows.map(parseRecord).filter((lease) => leaseRole(lease, identity)), total }
}
