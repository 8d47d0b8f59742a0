import { CODE_TICKET_PATTERN, CODE_TICKET_TTL_SECONDS, type CodeHealth } from '../../src/protocol/code.js'
import { ApiError } from '../../src/protocol/errors.js'
import type { LeaseRecord } from '../../src/protocol/leases.js'
import { relayStub, RELAY_HEADER, type RelayFacts } from '../bridge/handoff.js'
import type { Env } from '../env.js'
import { getLeaseRecord } from './lease-store.js'
import type { FleetStorage } from './storage.js'

/**
 * The Fleet object's part of the code bridge: whether a lease can have it, the one-use
 * bridge tickets and the bridge command. The agent socket, the browser sockets and the
 * requests in flight live in the lease's relay object (worker/bridge/code-relay.ts).
 */

export const CODE_TICKET_SCHEMA = [
  `CREATE TABLE code_tickets (
    ticket TEXT PRIMARY KEY,
    lease_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  )`,
  'CREATE INDEX code_tickets_expiry ON code_tickets (expires_at)',
]

export const codeUnavailable = (message: string) => new ApiError(409, 'code_unavailable', message)

/** A lease can have the code bridge when it is active, was made with code, is Linux and has a host; else 409. */
export function requireCode(lease: LeaseRecord): void {
  if (lease.state !== 'active') throw codeUnavailable('lease is not active')
  if (!lease.code) throw codeUnavailable('lease was not created with code=true')
  if (lease.target && lease.target !== 'linux') throw codeUnavailable('code is currently available for Linux leases only')
  if (!lease.host) throw codeUnavailable('lease has no reachable host yet')
}

const randomHex = (bytes: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')

/** A one-use ticket for the agent socket of `lease`; expired tickets are purged first. */
export function mintCodeTicket(
  storage: FleetStorage,
  lease: LeaseRecord,
  now: Date,
): { ticket: string; leaseID: string; expiresAt: string } {
  storage.run('DELETE FROM code_tickets WHERE expires_at <= ?', now.getTime())
  const ticket = `code_${randomHex(16)}`
  const expires = now.getTime() + CODE_TICKET_TTL_SECONDS * 1000
  storage.run('INSERT INTO code_tickets (ticket, lease_id, expires_at) VALUES (?, ?, ?)', ticket, lease.id, expires)
  return { ticket, leaseID: lease.id, expiresAt: new Date(expires).toISOString() }
}

export const codeTicketRequired = () => new ApiError(401, 'code_ticket_required', 'valid code bridge ticket required')

/**
 * Spends a ticket: deleted on first use, even when it turns out expired. Answers the lease
 * it was minted for; 401 when malformed, unknown, spent or expired; 404 when the path
 * names another lease (by ID or slug).
 */
export function consumeCodeTicket(storage: FleetStorage, ticket: string | undefined, ref: string, now: Date): LeaseRecord {
  if (!ticket || !CODE_TICKET_PATTERN.test(ticket)) throw codeTicketRequired()
  const row = storage.one<{ lease_id: string; expires_at: number }>(
    'DELETE FROM code_tickets WHERE ticket = ? RETURNING lease_id, expires_at',
    ticket,
  )
  if (!row || row.expires_at <= now.getTime()) throw codeTicketRequired()
  const lease = getLeaseRecord(storage, row.lease_id)
  if (!lease || (ref !== lease.id && ref !== lease.slug)) throw new ApiError(404, 'not_found', `lease ${ref} not found`)
  return lease
}

const SAFE_ARG = /^[A-Za-z0-9_./:@=-]+$/
const quoteArg = (arg: string) => (SAFE_ARG.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)

/** The command that starts the code bridge for `lease` (the waiting page shows it). */
export function codeBridgeCommand(lease: LeaseRecord): string {
  return ['crabbox', 'code', '--id', lease.slug || lease.id, '--open'].map(quoteArg).join(' ')
}

/** What the relay reports of the code bridge. */
export interface CodeRelayState {
  agentConnected: boolean
  pendingRequests: number
}

export async function codeRelayState(env: Env, lease: LeaseRecord): Promise<CodeRelayState> {
  const facts: RelayFacts = { leaseID: lease.id }
  const response = await relayStub(env, lease.id).fetch('https://relay.internal/code-state', {
    headers: { [RELAY_HEADER]: JSON.stringify(facts) },
  })
  return response.json()
}

export function codeHealth(lease: LeaseRecord, state: CodeRelayState): CodeHealth {
  return {
    lease: { id: lease.id, slug: lease.slug ?? '', state: lease.state, code: Boolean(lease.code) },
    code: { agentConnected: state.agentConnected, pendingRequests: state.pendingRequests },
  }
}
