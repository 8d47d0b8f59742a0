import { ApiError } from '../../src/protocol/errors.js'
import {
  EGRESS_ROLES,
  EGRESS_TICKET_PATTERN,
  EGRESS_TICKET_TTL_SECONDS,
  MAX_ALLOW_ENTRIES,
  MAX_ALLOW_LENGTH,
  MAX_PROFILE_LENGTH,
  MAX_SESSION_LENGTH,
  type EgressRole,
  type EgressStatus,
  type EgressTicketResponse,
} from '../../src/protocol/egress.js'
import type { LeaseRecord } from '../../src/protocol/leases.js'
import { relayStub, RELAY_HEADER } from '../bridge/handoff.js'
import type { Env } from '../env.js'
import { getLeaseRecord } from './lease-store.js'
import type { FleetStorage } from './storage.js'

/**
 * The Fleet object's part of mediated egress: the one-use tickets of the two bridge sockets
 * and the lease's sessions (the newest one is current). The sockets live in the lease's
 * relay object (worker/bridge/egress-relay.ts), which pairs a host and a client of one
 * session and forwards their frames.
 */

export const EGRESS_SCHEMA = [
  `CREATE TABLE egress_tickets (
    ticket TEXT PRIMARY KEY,
    lease_id TEXT NOT NULL,
    role TEXT NOT NULL,
    session_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  )`,
  'CREATE INDEX egress_tickets_expiry ON egress_tickets (expires_at)',
  `CREATE TABLE egress_sessions (
    lease_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    allow TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (lease_id, session_id)
  )`,
]

/** Egress needs an active lease; else 409. */
export function requireEgress(lease: LeaseRecord): void {
  if (lease.state !== 'active') throw new ApiError(409, 'egress_unavailable', 'lease is not active')
}

const randomHex = (bytes: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')

export interface TicketAsk {
  role: EgressRole
  sessionID: string
  profile: string
  allow: string[]
}

/** The ticket request as the route reads it: role (default host), session (minted when absent), profile, allow-list. */
export function readTicketAsk(body: Record<string, unknown>): TicketAsk {
  const role = body.role === undefined || body.role === '' ? 'host' : body.role
  if (typeof role !== 'string' || !(EGRESS_ROLES as readonly string[]).includes(role)) {
    throw new ApiError(400, 'invalid_egress_role', 'egress ticket role must be host or client')
  }
  const rawSession = typeof body.sessionID === 'string' ? body.sessionID : typeof body.sessionId === 'string' ? body.sessionId : ''
  const session = rawSession.trim().slice(0, MAX_SESSION_LENGTH)
  const profile = typeof body.profile === 'string' ? body.profile.trim().slice(0, MAX_PROFILE_LENGTH) : ''
  const allow: string[] = []
  for (const entry of Array.isArray(body.allow) ? body.allow : []) {
    if (typeof entry !== 'string') continue
    const host = entry.trim().toLowerCase()
    if (!host || host.length > MAX_ALLOW_LENGTH || allow.includes(host)) continue
    if (allow.length < MAX_ALLOW_ENTRIES) allow.push(host)
  }
  return { role: role as EgressRole, sessionID: session || `egress_${randomHex(8)}`, profile, allow }
}

type SessionRow = {
  session_id: string
  profile: string
  allow: string
  created_at: number
  updated_at: number
}

/** The lease's current session: the newest by creation. */
export function currentSession(storage: FleetStorage, leaseID: string): SessionRow | undefined {
  return storage.one<SessionRow>(
    'SELECT session_id, profile, allow, created_at, updated_at FROM egress_sessions WHERE lease_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1',
    leaseID,
  )
}

/**
 * Mints a ticket for one socket of `ask.sessionID`; expired tickets are purged first. The
 * session is recorded (a profile or allow-list given now replaces the one it had), so the
 * newest session becomes the lease's current one.
 */
export function mintEgressTicket(storage: FleetStorage, lease: LeaseRecord, ask: TicketAsk, now: Date): EgressTicketResponse {
  const at = now.getTime()
  storage.run('DELETE FROM egress_tickets WHERE expires_at <= ?', at)
  const known = storage.one<SessionRow>(
    'SELECT session_id, profile, allow, created_at, updated_at FROM egress_sessions WHERE lease_id = ? AND session_id = ?',
    lease.id,
    ask.sessionID,
  )
  if (known) {
    storage.run(
      'UPDATE egress_sessions SET profile = ?, allow = ?, updated_at = ? WHERE lease_id = ? AND session_id = ?',
      ask.profile || known.profile,
      ask.allow.length ? JSON.stringify(ask.allow) : known.allow,
      at,
      lease.id,
      ask.sessionID,
    )
  } else {
    // A session never goes back in time: a fresh one is at least as new as the current one.
    const created = Math.max(at, (currentSession(storage, lease.id)?.created_at ?? 0) + 1)
    storage.run(
      'INSERT INTO egress_sessions (lease_id, session_id, profile, allow, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
      lease.id,
      ask.sessionID,
      ask.profile,
      JSON.stringify(ask.allow),
      created,
      at,
    )
  }
  const ticket = `egress_${randomHex(16)}`
  const expires = at + EGRESS_TICKET_TTL_SECONDS * 1000
  storage.run(
    'INSERT INTO egress_tickets (ticket, lease_id, role, session_id, expires_at) VALUES (?, ?, ?, ?, ?)',
    ticket,
    lease.id,
    ask.role,
    ask.sessionID,
    expires,
  )
  return { ticket, leaseID: lease.id, role: ask.role, sessionID: ask.sessionID, expiresAt: new Date(expires).toISOString() }
}

export const egressTicketRequired = () => new ApiError(401, 'egress_ticket_required', 'valid egress bridge ticket required')

/**
 * Spends a ticket on the socket of `role`: deleted on first use, even when expired or for
 * the other role. 401 when malformed, unknown, spent, expired or for the other role; 404
 * when the path names another lease.
 */
export function consumeEgressTicket(
  storage: FleetStorage,
  ticket: string | undefined,
  role: EgressRole,
  ref: string,
  now: Date,
): { lease: LeaseRecord; sessionID: string } {
  if (!ticket || !EGRESS_TICKET_PATTERN.test(ticket)) throw egressTicketRequired()
  const row = storage.one<{ lease_id: string; role: string; session_id: string; expires_at: number }>(
    'DELETE FROM egress_tickets WHERE ticket = ? RETURNING lease_id, role, session_id, expires_at',
    ticket,
  )
  if (!row || row.expires_at <= now.getTime() || row.role !== role) throw egressTicketRequired()
  const lease = getLeaseRecord(storage, row.lease_id)
  if (!lease || (ref !== lease.id && ref !== lease.slug)) throw new ApiError(404, 'not_found', `lease ${ref} not found`)
  return { lease, sessionID: row.session_id }
}

/** Which sides of which sessions the relay holds open. */
export interface EgressRelayState {
  sockets: { role: EgressRole; sessionID: string }[]
}

export async function egressRelayState(env: Env, leaseID: string): Promise<EgressRelayState> {
  const response = await relayStub(env, leaseID).fetch('https://relay.internal/egress/state', {
    headers: { [RELAY_HEADER]: JSON.stringify({ leaseID }) },
  })
  return (await response.json()) as EgressRelayState
}

/** Closes every egress socket of a released lease (the CLI halves see 1000 and stop). */
export async function closeEgress(env: Env, leaseID: string): Promise<void> {
  await relayStub(env, leaseID).fetch('https://relay.internal/egress/close', {
    method: 'POST',
    headers: { [RELAY_HEADER]: JSON.stringify({ leaseID }) },
  })
}

export async function egressStatus(storage: FleetStorage, env: Env, lease: LeaseRecord): Promise<EgressStatus> {
  const session = currentSession(storage, lease.id)
  const base = { leaseID: lease.id, slug: lease.slug ?? '' }
  if (!session) {
    return { ...base, sessionID: '', profile: '', allow: [], hostConnected: false, clientConnected: false, createdAt: '', updatedAt: '' }
  }
  const { sockets } = await egressRelayState(env, lease.id)
  const open = (role: EgressRole) => sockets.some((s) => s.role === role && s.sessionID === session.session_id)
  return {
    ...base,
    sessionID: session.session_id,
    profile: session.profile,
    allow: JSON.parse(session.allow) as string[],
    hostConnected: open('host'),
    clientConnected: open('client'),
    createdAt: new Date(session.created_at).toISOString(),
    updatedAt: new Date(session.updated_at).toISOString(),
  }
}

/** After leases ended (the alarm's expiry): closes the egress sockets of those that ever had a session. */
export async function closeEgressOf(storage: FleetStorage, env: Env, leaseIDs: readonly string[]): Promise<void> {
  for (const leaseID of leaseIDs) {
    if (!storage.one<{ n: number }>('SELECT 1 AS n FROM egress_sessions WHERE lease_id = ? LIMIT 1', leaseID)) continue
    await closeEgress(env, leaseID).catch((error) => console.error('egress close', error))
  }
}
