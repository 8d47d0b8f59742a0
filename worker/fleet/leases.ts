import { candidateTypes } from '../../src/cloud/classes.js'
import { defaultSlug, isLeaseId, newLeaseId, normalizeSlug, providerResourceName, slugCandidates } from '../../src/protocol/ids.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import {
  LEASE_LIST_DEFAULT_LIMIT,
  LIVE_LEASE_STATES,
  mergeTelemetrySeries,
  sanitizeTelemetry,
  type HeartbeatRequest,
  type LeaseListQuery,
  type LeaseRecord,
  type LeaseRequest,
  type LeaseShare,
  type LeaseState,
  type SharePutRequest,
  type ShareDeleteRequest,
} from '../../src/protocol/leases.js'
import { canManageLease, leaseRole, type Identity } from '../auth/identity.js'
import { setting } from '../env.js'
import type { Machine, MachineRequest } from '../providers/types.js'
import { costLimits, enforceCaps, hourlyRate, maxEstimatedUSD, monthOf } from './caps.js'
import type { FleetDeps } from './router.js'
import { decodeCursor, encodeCursor, type FleetStorage } from './storage.js'

/**
 * Lease domain: create (idempotent on the client's lease ID), resolve by ID or
 * slug, list, heartbeat, release, share, and the expiry/cleanup steps the alarm
 * drives. State lives in one `leases` table; the record JSON is the wire shape,
 * the columns beside it are what queries filter on.
 */

const SCHEMA = [
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
  `CREATE INDEX leases_live ON leases (expires_at) WHERE state IN ('provisioning', 'active')`,
  `CREATE INDEX leases_live_slug ON leases (slug) WHERE state IN ('provisioning', 'active')`,
  'CREATE INDEX leases_cleanup ON leases (cleanup_at) WHERE cleanup_at IS NOT NULL',
  `CREATE TABLE lease_shares (
     lease_id TEXT NOT NULL,
     principal TEXT NOT NULL,
     role TEXT NOT NULL,
     PRIMARY KEY (lease_id, principal)
   )`,
  'CREATE INDEX lease_shares_by_principal ON lease_shares (principal, lease_id)',
]

export function ensureLeaseSchema(storage: FleetStorage): void {
  storage.migrate('leases-v1', SCHEMA)
}

export const MAX_LEASE_SECONDS = 86_400
export const DEFAULT_TTL_SECONDS = 5_400
export const DEFAULT_IDLE_SECONDS = 1_800
const LIVE_SQL = `state IN (${LIVE_LEASE_STATES.map((s) => `'${s}'`).join(',')})`

type Row = {
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

const parseRecord = (row: { record: string }): LeaseRecord => JSON.parse(row.record) as LeaseRecord

export function getLeaseRecord(storage: FleetStorage, id: string): LeaseRecord | undefined {
  const row = storage.one<{ record: string }>('SELECT record FROM leases WHERE id = ?', id)
  return row ? parseRecord(row) : undefined
}

/** Writes the record and the columns derived from it. */
function saveRecord(storage: FleetStorage, lease: LeaseRecord): void {
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

// ---- expiry math (§7.2) ----------------------------------------------------------

/** Clamp like the reference: non-finite or ≤ 0 → default; truncated; ≤ 86400. */
export function clampSeconds(value: number | undefined, fallback: number): number {
  if (value === undefined || !Number.isFinite(value) || value <= 0) return fallback
  return Math.min(Math.trunc(value), MAX_LEASE_SECONDS)
}

/** `min(createdAt + ttl, lastTouchedAt + idle)`: heartbeats never push past the TTL. */
export function computeExpiresAt(lease: Pick<LeaseRecord, 'createdAt' | 'lastTouchedAt' | 'ttlSeconds' | 'idleTimeoutSeconds'>): string {
  const created = Date.parse(lease.createdAt)
  const touched = Date.parse(lease.lastTouchedAt)
  const ttl = Math.max(1, lease.ttlSeconds) * 1000
  const idle = Math.max(1, lease.idleTimeoutSeconds > 0 ? lease.idleTimeoutSeconds : lease.ttlSeconds) * 1000
  return new Date(Math.min(created + ttl, (Number.isFinite(touched) ? touched : created) + idle)).toISOString()
}

// ---- resolution and visibility (§3.1) ---------------------------------------------

/**
 * A lease by exact ID (any state) or by slug (live, unexpired). Not visible and
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
  const candidates = storage
    .all<{ record: string }>(`SELECT record FROM leases WHERE slug = ? AND ${LIVE_SQL} AND expires_at > ? LIMIT 50`, slug, now.toISOString())
    .map(parseRecord)
    .filter((lease) => lease.state === 'active' && leaseRole(lease, identity))
  if (!candidates.length) throw notFound()
  if (candidates.length > 1) {
    throw new ApiError(409, ErrorCode.ambiguousSlug, `slug ${slug} matches ${candidates.length} leases (${candidates.map((l) => `${l.id}:${l.owner}`).join(', ')}); use a lease ID`)
  }
  return candidates[0]
}

function requireManage(lease: LeaseRecord, identity: Identity): void {
  if (!canManageLease(lease, identity)) throw new ApiError(403, ErrorCode.forbidden, 'lease manage access required')
}

// ---- list (§4.4) ----------------------------------------------------------------

export interface LeasePage {
  leases: LeaseRecord[]
  nextCursor?: string
}

/**
 * Newest first. Filters and visibility are applied in the query, before the
 * limit (the reference filters after, returning short pages), so a page is
 * full unless it is the last.
 */
export function listLeases(storage: FleetStorage, identity: Identity, query: LeaseListQuery): LeasePage {
  const limit = query.limit ?? LEASE_LIST_DEFAULT_LIMIT
  const where: string[] = []
  const bindings: unknown[] = []
  if (query.state) where.push('state = ?'), bindings.push(query.state)
  if (query.owner) where.push('owner = ?'), bindings.push(query.owner)
  if (query.org) where.push('org = ?'), bindings.push(query.org)
  if (query.cursor) {
    const cursor = decodeCursor(query.cursor)
    if (!cursor) throw new ApiError(400, ErrorCode.invalidRequest, 'invalid query: cursor: pass back the nextCursor of a previous page')
    where.push('(created_at < ? OR (created_at = ? AND id < ?))')
    bindings.push(cursor.time, cursor.time, cursor.id)
  }
  if (!identity.admin) {
    where.push(`((owner = ? AND org = ?) OR id IN (SELECT lease_id FROM lease_shares WHERE principal IN (?, ?)))`)
    bindings.push(identity.owner, identity.org, `user:${identity.owner.trim().toLowerCase()}`, `org:${identity.org}`)
  }
  const rows = storage.all<{ record: string; created_at: string; id: string }>(
    `SELECT record, created_at, id FROM leases ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ?`,
    ...bindings,
    limit + 1,
  )
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return { leases: page.map(parseRecord), ...(rows.length > limit && last ? { nextCursor: encodeCursor(last.created_at, last.id) } : {}) }
}

/** Live leases (provisioning or active), oldest expiry first, bounded. For usage and control modules. */
export function liveLeases(storage: FleetStorage, limit: number): LeaseRecord[] {
  return storage.all<{ record: string }>(`SELECT record FROM leases WHERE ${LIVE_SQL} ORDER BY expires_at LIMIT ?`, limit).map(parseRecord)
}

// ---- create (§4.3) ----------------------------------------------------------------

const TARGET_ALIASES: Record<string, string> = { linux: 'linux', ubuntu: 'linux' }

/** In-flight creates per object, so a retried create waits for the first one instead of provisioning twice. */
const inflight = new WeakMap<FleetStorage, Map<string, Promise<LeaseRecord>>>()

function inflightFor(storage: FleetStorage): Map<string, Promise<LeaseRecord>> {
  let map = inflight.get(storage)
  if (!map) inflight.set(storage, (map = new Map()))
  return map
}

function defaultProvider(deps: FleetDeps): string {
  return setting(deps.env, 'CRABBOX_DEFAULT_PROVIDER') ?? (setting(deps.env, 'CRABBOX_STATIC_POOL') ? 'static' : 'hetzner')
}

function ownedBy(lease: LeaseRecord, identity: Identity): boolean {
  return lease.owner === identity.owner && lease.org === identity.org
}

/** Picks the first free slug among the base and its suffixed candidates (same owner and org, live). */
function allocateSlug(storage: FleetStorage, identity: Identity, base: string, leaseId: string, now: Date): string {
  for (const candidate of slugCandidates(base, leaseId)) {
    const taken = storage.one(
      `SELECT 1 AS taken FROM leases WHERE slug = ? AND owner = ? AND org = ? AND ${LIVE_SQL} AND expires_at > ? LIMIT 1`,
      candidate,
      identity.owner,
      identity.org,
      now.toISOString(),
    )
    if (!taken) return candidate
  }
  throw new ApiError(409, ErrorCode.slugUnavailable, `could not allocate a slug for ${leaseId}; request a different slug`)
}

export interface CreateResult {
  lease: LeaseRecord
  /** False when an earlier create with the same lease ID already made it. */
  created: boolean
}

/**
 * Creates a lease. The caps check and the `provisioning` reservation happen in
 * one synchronous transaction (exact under any concurrency); the provider call
 * happens outside any transaction; a failure removes the reservation, or,
 * when the outcome is unknown, leaves it for the alarm to clean up.
 */
export async function createLease(deps: FleetDeps, identity: Identity, request: LeaseRequest): Promise<CreateResult> {
  const { storage } = deps
  const leaseId = request.leaseID && isLeaseId(request.leaseID) ? request.leaseID : newLeaseId()
  const pending = inflightFor(storage)

  const ask: ProvisionAsk = {
    sshPublicKey: request.sshPublicKey,
    serverType: request.serverType,
    market: request.capacity?.market,
    placement: {
      location: request.location,
      image: request.image,
      ami: request.awsAMI,
      securityGroupId: request.awsSGID,
      subnetId: request.awsSubnetID,
      rootGB: request.awsRootGB,
      fallback: request.capacity?.fallback,
    },
  }
  const track = async (work: Promise<LeaseRecord>): Promise<LeaseRecord> => {
    pending.set(leaseId, work)
    try {
      return await work
    } finally {
      pending.delete(leaseId)
    }
  }

  const existingOutcome = async (): Promise<CreateResult | undefined> => {
    const existing = getLeaseRecord(storage, leaseId)
    if (!existing) return undefined
    if (!ownedBy(existing, identity)) throw new ApiError(409, ErrorCode.leaseIdConflict, `lease ID ${leaseId} is already in use; retry without leaseID or with a new one`)
    const first = pending.get(leaseId)
    if (first) return { lease: await first, created: false }
    // Reserved by an object instance that is gone (evicted mid-create): finish the job.
    // Providers adopt a machine that already carries this lease's label, so this never makes a second one.
    if (existing.state === 'provisioning') return { lease: await track(provision(deps, existing, ask)), created: false }
    // Never hand back a lease with no machine as if the retry had worked.
    if (existing.state === 'failed') throw unconfirmed(existing)
    return { lease: existing, created: false }
  }
  const early = await existingOutcome()
  if (early) return early

  const providerName = request.provider?.trim().toLowerCase() || defaultProvider(deps)
  const provider = deps.providers.get(providerName)
  const target = TARGET_ALIASES[(request.target ?? request.targetOS ?? 'linux').trim().toLowerCase()]
  if (!target) throw new ApiError(400, ErrorCode.unsupportedTarget, `target ${request.target ?? request.targetOS} is not supported by this broker yet; use linux`)
  if (request.tailscale) throw new ApiError(400, ErrorCode.unsupportedTarget, 'brokered Tailscale provisioning is not supported by this broker')

  const ttlSeconds = clampSeconds(request.ttlSeconds, DEFAULT_TTL_SECONDS)
  const idleTimeoutSeconds = clampSeconds(request.idleTimeoutSeconds, DEFAULT_IDLE_SECONDS)
  const leaseClass = request.class || 'beast'
  // The record shows the first candidate (reference); the provider gets a type only when one was asked for.
  const serverType = request.serverType || (providerName === 'hetzner' || providerName === 'aws' ? candidateTypes(providerName, leaseClass)[0] : providerName === 'static' ? 'ssh' : leaseClass)
  // Pricing may call the provider: before the transaction, never inside it.
  const hourly = await hourlyRate(deps.env, providerName, provider, serverType)

  const now = deps.now()
  const nowIso = now.toISOString()
  const requested = normalizeSlug(request.slug ?? request.requestedSlug ?? '')
  const reservation = storage.transaction((): { raced: boolean; lease: LeaseRecord } => {
    // Re-check: a concurrent create with this ID may have reserved it while we priced.
    const raced = getLeaseRecord(storage, leaseId)
    if (raced) return { raced: true, lease: raced }
    const slug = allocateSlug(storage, identity, requested || defaultSlug(leaseId), leaseId, now)
    const lease: LeaseRecord = {
      id: leaseId,
      slug,
      provider: providerName,
      target,
      desktop: request.desktop ?? false,
      browser: request.browser ?? false,
      code: request.code ?? false,
      owner: identity.owner,
      org: identity.org,
      profile: request.profile || 'default',
      class: leaseClass,
      serverType,
      requestedServerType: serverType,
      serverID: 0,
      serverName: providerResourceName(leaseId, slug),
      providerKey: request.providerKey || `crabbox-${leaseId.replace(/_/g, '-')}`,
      host: '',
      sshUser: request.sshUser || 'crabbox',
      sshPort: request.sshPort || '2222',
      sshFallbackPorts: [...new Set(request.sshFallbackPorts ?? ['22'])],
      workRoot: request.workRoot || '/work/crabbox',
      keep: request.keep ?? false,
      ttlSeconds,
      idleTimeoutSeconds,
      estimatedHourlyUSD: hourly,
      maxEstimatedUSD: maxEstimatedUSD(ttlSeconds, hourly),
      state: 'provisioning',
      createdAt: nowIso,
      updatedAt: nowIso,
      lastTouchedAt: nowIso,
      expiresAt: '',
    }
    lease.expiresAt = computeExpiresAt(lease)
    enforceCaps(storage, costLimits(deps.env), { owner: identity.owner, org: identity.org, month: monthOf(nowIso), reservedUSD: lease.maxEstimatedUSD ?? 0 })
    storage.run(
      `INSERT INTO leases (id, owner, org, state, slug, provider, created_at, expires_at, month, reserved_usd, record)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      lease.id,
      lease.owner,
      lease.org,
      lease.state,
      lease.slug,
      lease.provider,
      lease.createdAt,
      lease.expiresAt,
      monthOf(nowIso),
      lease.maxEstimatedUSD ?? 0,
      JSON.stringify(lease),
    )
    return { raced: false, lease }
  })
  if (reservation.raced) return (await existingOutcome()) ?? { lease: reservation.lease, created: false }
  // Armed before the provider call: if this object dies mid-create, the alarm still expires
  // the reservation and deletes whatever machine carries its lease label.
  await deps.wakeBy(Date.parse(reservation.lease.expiresAt))

  return { lease: await track(provision(deps, reservation.lease, ask)), created: true }
}

/** What a create asks of the provider beyond the lease record (never stored: the key is the caller's). */
type ProvisionAsk = Pick<MachineRequest, 'sshPublicKey' | 'serverType' | 'market' | 'placement'>

const unconfirmed = (lease: LeaseRecord) =>
  new ApiError(502, ErrorCode.providerFailed, `${lease.provider} did not confirm the machine for ${lease.id}; it will be cleaned up. Create the lease again with a new lease ID.`)

async function provision(deps: FleetDeps, lease: LeaseRecord, ask: ProvisionAsk): Promise<LeaseRecord> {
  const { storage } = deps
  const provider = deps.providers.get(lease.provider)
  let machine: Machine | undefined
  let failure: unknown
  try {
    machine = await provider.create({
      leaseId: lease.id,
      slug: lease.slug,
      owner: lease.owner,
      org: lease.org,
      profile: lease.profile ?? 'default',
      class: lease.class ?? '',
      serverType: ask.serverType,
      target: lease.target,
      market: ask.market,
      sshPublicKey: ask.sshPublicKey,
      providerKey: lease.providerKey ?? '',
      keep: lease.keep,
      ttlSeconds: lease.ttlSeconds,
      idleTimeoutSeconds: lease.idleTimeoutSeconds,
      expiresAt: lease.expiresAt,
      placement: ask.placement,
    })
  } catch (error) {
    failure = error
  }
  if (!machine && !(failure instanceof ApiError)) {
    // Unknown outcome (timeout, lost reply): the machine may exist. Adopt it by its lease label.
    try {
      machine = await provider.describe(lease.id)
    } catch {
      storage.transaction(() => {
        const current = getLeaseRecord(storage, lease.id)
        if (!current) return
        const now = deps.now().toISOString()
        // Released meanwhile: it stays released, but the machine may exist all the same.
        if (current.state === 'provisioning') saveRecord(storage, { ...current, state: 'failed', maxEstimatedUSD: 0, updatedAt: now, endedAt: now })
        storage.run('UPDATE leases SET cleanup_at = ?, machine = ? WHERE id = ?', deps.now().getTime(), JSON.stringify({ id: '', name: current.serverName ?? '', labels: {} }), lease.id)
      })
      await deps.wakeBy(deps.now().getTime())
      throw unconfirmed(lease)
    }
  }
  if (!machine) {
    storage.run("DELETE FROM leases WHERE id = ? AND state = 'provisioning'", lease.id)
    if (failure instanceof ApiError) throw failure
    throw new ApiError(502, ErrorCode.providerFailed, `${lease.provider} could not create a machine: ${failure instanceof Error ? failure.message : String(failure)}`)
  }

  const hourly = typeof machine.hourlyUSD === 'number' && machine.hourlyUSD >= 0 && machine.serverType !== lease.serverType ? machine.hourlyUSD : lease.estimatedHourlyUSD ?? 0
  const ready = storage.transaction(() => {
    const current = getLeaseRecord(storage, lease.id)
    if (!current) return undefined
    const nowIso = deps.now().toISOString()
    const next: LeaseRecord = {
      ...current,
      state: current.state === 'provisioning' ? 'active' : current.state,
      cloudID: machine.id,
      serverID: /^\d+$/.test(machine.id) ? Number(machine.id) : 0,
      serverName: machine.name,
      serverType: machine.serverType || current.serverType,
      host: machine.host,
      sshUser: machine.sshUser,
      sshPort: machine.sshPort,
      sshFallbackPorts: machine.sshFallbackPorts,
      workRoot: machine.workRoot,
      estimatedHourlyUSD: hourly,
      maxEstimatedUSD: maxEstimatedUSD(current.ttlSeconds, hourly),
      ...(machine.region ? { region: machine.region } : {}),
      ...(machine.market ? { market: machine.market } : {}),
      updatedAt: nowIso,
      lastTouchedAt: nowIso,
    }
    next.expiresAt = computeExpiresAt(next)
    saveRecord(storage, next)
    const ref: MachineRef = { id: machine.id, name: machine.name, labels: machine.labels, ...(machine.region ? { region: machine.region } : {}) }
    storage.run('UPDATE leases SET machine = ? WHERE id = ?', JSON.stringify(ref), lease.id)
    // Released (or expired) while provisioning: the machine must go right away.
    if (next.state !== 'active') storage.run('UPDATE leases SET cleanup_at = ? WHERE id = ? AND cleanup_at IS NULL', deps.now().getTime(), lease.id)
    return next
  })
  if (!ready) throw new ApiError(404, ErrorCode.notFound, `lease ${lease.id} disappeared while provisioning`)
  await deps.wakeBy(ready.state === 'active' ? Date.parse(ready.expiresAt) : deps.now().getTime())
  return ready
}

// ---- heartbeat (§4.6) ---------------------------------------------------------------

/**
 * Touches a live lease: `lastTouchedAt = now`, optional idle timeout, optional
 * telemetry; `expiresAt` recomputed (never past the TTL). A lease that is not
 * active, or whose expiry has passed, answers 409 `lease_not_active` and is
 * never revived. Used by the HTTP route and the control socket.
 */
export async function heartbeatLease(deps: FleetDeps, identity: Identity, ref: string, body: HeartbeatRequest): Promise<LeaseRecord> {
  const { storage } = deps
  const now = deps.now()
  const nowIso = now.toISOString()
  const updated = storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, now)
    if (lease.state !== 'active' || Date.parse(lease.expiresAt) <= now.getTime()) {
      const state = lease.state === 'active' ? 'expired' : lease.state
      throw new ApiError(409, ErrorCode.leaseNotActive, `lease ${lease.id} is ${state}; a heartbeat cannot revive it — create a new lease`)
    }
    const next: LeaseRecord = { ...lease, updatedAt: nowIso, lastTouchedAt: nowIso }
    if (body.idleTimeoutSeconds !== undefined && body.idleTimeoutSeconds > 0) next.idleTimeoutSeconds = clampSeconds(body.idleTimeoutSeconds, next.idleTimeoutSeconds)
    const sample = sanitizeTelemetry(body.telemetry, now)
    if (sample) {
      next.telemetry = sample
      next.telemetryHistory = mergeTelemetrySeries(lease.telemetryHistory ?? [], [sample])
    }
    next.expiresAt = computeExpiresAt(next)
    saveRecord(storage, next)
    return next
  })
  await deps.wakeBy(Date.parse(updated.expiresAt))
  return updated
}

// ---- release, delete (§4.8, §4.23) -----------------------------------------------------

/**
 * Marks a lease released and, when asked (default: unless kept), deletes its
 * machine. Safe to repeat: a lease already released answers 200 unchanged.
 * Static hosts are always handed back to the pool.
 */
export async function releaseLease(
  deps: FleetDeps,
  identity: Identity,
  ref: string,
  options: { delete?: boolean; forgetKeep?: boolean } = {},
): Promise<LeaseRecord> {
  const { storage } = deps
  const now = deps.now()
  const nowIso = now.toISOString()
  const { lease, cleanup } = storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, now)
    requireManage(lease, identity)
    const row = storage.one<{ machine: string | null; cleanup_at: number | null }>('SELECT machine, cleanup_at FROM leases WHERE id = ?', lease.id)
    // A machine that exists and that nobody is deleting yet (e.g. released with delete:false).
    const keptMachine = row?.machine != null && row.cleanup_at === null
    const queue = () => storage.run('UPDATE leases SET cleanup_at = ? WHERE id = ? AND cleanup_at IS NULL', now.getTime(), lease.id)
    if (lease.state === 'released') {
      // Repeats are no-ops, except an explicit delete of a machine that was kept.
      if (!(options.delete === true && keptMachine)) return { lease, cleanup: false }
      const next: LeaseRecord = { ...lease, updatedAt: nowIso, ...(options.forgetKeep ? { keep: false } : {}) }
      saveRecord(storage, next)
      queue()
      return { lease: next, cleanup: true }
    }
    const deleteMachine = lease.provider === 'static' || (options.delete ?? !lease.keep)
    const wasLive = (LIVE_LEASE_STATES as string[]).includes(lease.state)
    const next: LeaseRecord = { ...lease, state: 'released', updatedAt: nowIso, releasedAt: nowIso, endedAt: lease.endedAt && !wasLive ? lease.endedAt : nowIso }
    if (options.forgetKeep) next.keep = false
    saveRecord(storage, next)
    // A create still running in this object queues the deletion itself once the machine exists.
    const cleanup = deleteMachine && (wasLive || keptMachine) && !inflightFor(storage).has(lease.id)
    if (cleanup) queue()
    return { lease: next, cleanup }
  })
  if (cleanup) {
    // Without an address the create died with an old instance: only the machine's lease label
    // finds it, which is the alarm's job.
    if (lease.host) await cleanupMachine(deps, lease.id)
    else await deps.wakeBy(now.getTime())
  }
  return lease
}

// ---- sharing (§4.9) ------------------------------------------------------------------

function normalizeShare(share: LeaseShare | undefined): LeaseShare {
  return { users: { ...(share?.users ?? {}) }, ...(share?.org ? { org: share.org } : {}), ...(share?.updatedAt ? { updatedAt: share.updatedAt, updatedBy: share.updatedBy } : {}) }
}

function writeShare(storage: FleetStorage, lease: LeaseRecord, share: LeaseShare | undefined): LeaseRecord {
  const next: LeaseRecord = { ...lease }
  if (share && (Object.keys(share.users ?? {}).length || share.org)) next.share = share
  else delete next.share
  saveRecord(storage, next)
  storage.run('DELETE FROM lease_shares WHERE lease_id = ?', lease.id)
  for (const [user, role] of Object.entries(next.share?.users ?? {})) storage.run('INSERT INTO lease_shares (lease_id, principal, role) VALUES (?, ?, ?)', lease.id, `user:${user}`, role)
  if (next.share?.org) storage.run('INSERT INTO lease_shares (lease_id, principal, role) VALUES (?, ?, ?)', lease.id, `org:${lease.org}`, next.share.org)
  return next
}

export function getShare(deps: FleetDeps, identity: Identity, ref: string): { leaseID: string; share: LeaseShare } {
  const lease = resolveLease(deps.storage, identity, ref, deps.now())
  return { leaseID: lease.id, share: normalizeShare(lease.share) }
}

export function putShare(deps: FleetDeps, identity: Identity, ref: string, body: SharePutRequest): { leaseID: string; share: LeaseShare } {
  const { storage } = deps
  return storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, deps.now())
    requireManage(lease, identity)
    const users: Record<string, 'use' | 'manage'> = {}
    for (const [user, role] of Object.entries(body.users ?? {})) {
      const key = user.trim().toLowerCase()
      if (key) users[key] = role
    }
    const share: LeaseShare = { users, ...(body.org ? { org: body.org } : {}), updatedAt: deps.now().toISOString(), updatedBy: identity.owner }
    const next = writeShare(storage, lease, share)
    return { leaseID: lease.id, share: normalizeShare(next.share) }
  })
}

export function deleteShare(deps: FleetDeps, identity: Identity, ref: string, body: ShareDeleteRequest): { leaseID: string; share: LeaseShare } {
  const { storage } = deps
  return storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, deps.now())
    requireManage(lease, identity)
    let share: LeaseShare | undefined
    if (body.user !== undefined || body.org) {
      const users = { ...(lease.share?.users ?? {}) }
      if (body.user !== undefined) delete users[body.user.trim().toLowerCase()]
      share = { users, ...(lease.share?.org && !body.org ? { org: lease.share.org } : {}), updatedAt: deps.now().toISOString(), updatedBy: identity.owner }
    }
    const next = writeShare(storage, lease, share)
    return { leaseID: lease.id, share: normalizeShare(next.share) }
  })
}

// ---- expiry and machine cleanup (driven by the alarm, §7.3) ---------------------------------

/** Marks up to `limit` live leases whose expiry has passed as expired and queues their machines for deletion. */
export function expireDueLeases(storage: FleetStorage, now: Date, limit: number): string[] {
  const nowIso = now.toISOString()
  return storage.transaction(() => {
    const due = storage.all<{ record: string }>(`SELECT record FROM leases WHERE ${LIVE_SQL} AND expires_at <= ? ORDER BY expires_at LIMIT ?`, nowIso, limit).map(parseRecord)
    const expired: string[] = []
    for (const lease of due) {
      // A provisioning lease is still being created by this object; its create finishes the job.
      if (lease.state === 'provisioning' && inflightFor(storage).has(lease.id)) continue
      saveRecord(storage, { ...lease, state: 'expired' as LeaseState, updatedAt: nowIso, endedAt: nowIso })
      storage.run('UPDATE leases SET cleanup_at = ? WHERE id = ? AND cleanup_at IS NULL', now.getTime(), lease.id)
      expired.push(lease.id)
    }
    return expired
  })
}

/** Backoff between deletion attempts: 10 s, 20 s, 40 s … capped at 15 minutes. */
export const cleanupBackoffMs = (attempts: number): number => Math.min(10_000 * 2 ** Math.max(0, attempts - 1), 15 * 60_000)

/**
 * Deletes one lease's machine through its provider (outside any transaction).
 * Success clears the queue entry; failure schedules a retry with backoff. Idempotent.
 */
export async function cleanupMachine(deps: FleetDeps, leaseId: string): Promise<boolean> {
  const { storage } = deps
  const row = storage.one<Row>('SELECT * FROM leases WHERE id = ? AND cleanup_at IS NOT NULL', leaseId)
  if (!row) return true
  const machine: MachineRef = row.machine ? (JSON.parse(row.machine) as MachineRef) : { id: '', name: '', labels: {} }
  try {
    await deps.providers.get(row.provider).delete({ ...machine, leaseId })
    // The machine is gone: forget it, so later deletes have nothing to do.
    storage.run('UPDATE leases SET cleanup_at = NULL, cleanup_error = NULL, machine = NULL WHERE id = ?', leaseId)
    return true
  } catch (error) {
    const attempts = row.cleanup_attempts + 1
    storage.run(
      'UPDATE leases SET cleanup_attempts = ?, cleanup_at = ?, cleanup_error = ? WHERE id = ?',
      attempts,
      deps.now().getTime() + cleanupBackoffMs(attempts),
      (error instanceof Error ? error.message : String(error)).slice(0, 500),
      leaseId,
    )
    await deps.wakeBy(deps.now().getTime() + cleanupBackoffMs(attempts))
    return false
  }
}

/** Lease IDs whose machine deletion is due, oldest first. */
export function dueCleanups(storage: FleetStorage, now: number, limit: number): string[] {
  return storage.all<{ id: string }>('SELECT id FROM leases WHERE cleanup_at IS NOT NULL AND cleanup_at <= ? ORDER BY cleanup_at LIMIT ?', now, limit).map((r) => r.id)
}

/** Pending deletion state of a lease, for operators and tests. */
export function cleanupState(storage: FleetStorage, leaseId: string): { pending: boolean; attempts: number; error?: string } | undefined {
  const row = storage.one<{ cleanup_at: number | null; cleanup_attempts: number; cleanup_error: string | null }>(
    'SELECT cleanup_at, cleanup_attempts, cleanup_error FROM leases WHERE id = ?',
    leaseId,
  )
  if (!row) return undefined
  return { pending: row.cleanup_at !== null, attempts: row.cleanup_attempts, ...(row.cleanup_error ? { error: row.cleanup_error } : {}) }
}

/** The earliest moment the alarm has lease work: next expiry or next deletion retry. */
export function nextLeaseWake(storage: FleetStorage): number | undefined {
  const row = storage.one<{ expires: string | null; cleanup: number | null }>(
    `SELECT (SELECT min(expires_at) FROM leases WHERE ${LIVE_SQL}) AS expires, (SELECT min(cleanup_at) FROM leases WHERE cleanup_at IS NOT NULL) AS cleanup`,
  )
  const candidates = [row?.expires ? Date.parse(row.expires) : undefined, row?.cleanup ?? undefined].filter((n): n is number => typeof n === 'number')
  return candidates.length ? Math.min(...candidates) : undefined
}
