import { ApiError } from '../../src/protocol/errors.js'
import type { LeaseRecord } from '../../src/protocol/leases.js'
import { VIEWER_ID_PATTERN, WEBVNC_TICKET_PATTERN, WEBVNC_TICKET_TTL_SECONDS, type WebVncStatus } from '../../src/protocol/webvnc.js'
import type { Identity } from '../auth/identity.js'
import { callRelay, type RelayFacts, type RelayResetResult, type RelayState } from '../bridge/handoff.js'
import type { FleetDeps } from './deps.js'
import { getLeaseRecord } from './lease-store.js'
import type { FleetStorage } from './storage.js'

/**
 * The Fleet object's part of WebVNC: whether a lease can have it, the one-use bridge
 * tickets, the bridge command, and status built from what the lease's relay object
 * (worker/bridge/relay.ts) reports. The sockets themselves live in the relay.
 */

export const WEBVNC_TICKET_SCHEMA = [
  `CREATE TABLE webvnc_tickets (
    ticket TEXT PRIMARY KEY,
    lease_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  )`,
  'CREATE INDEX webvnc_tickets_expiry ON webvnc_tickets (expires_at)',
]

export const webVncUnavailable = (message: string) => new ApiError(409, 'webvnc_unavailable', message)

/** A lease can have WebVNC when it is active, was made with a desktop, and has a host; else 409. */
export function requireWebVnc(lease: LeaseRecord): void {
  if (lease.state !== 'active') throw webVncUnavailable('lease is not active')
  if (!lease.desktop) throw webVncUnavailable('lease was not created with desktop=true')
  if (!lease.host) throw webVncUnavailable('lease has no reachable host yet')
}

const randomHex = (bytes: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')

/** A one-use ticket for one agent socket of `lease`; expired tickets are purged first. */
export function mintTicket(storage: FleetStorage, lease: LeaseRecord, now: Date): { ticket: string; leaseID: string; expiresAt: string } {
  storage.run('DELETE FROM webvnc_tickets WHERE expires_at <= ?', now.getTime())
  const ticket = `wvnc_${randomHex(16)}`
  const expires = now.getTime() + WEBVNC_TICKET_TTL_SECONDS * 1000
  storage.run('INSERT INTO webvnc_tickets (ticket, lease_id, expires_at) VALUES (?, ?, ?)', ticket, lease.id, expires)
  return { ticket, leaseID: lease.id, expiresAt: new Date(expires).toISOString() }
}

export const ticketRequired = () => new ApiError(401, 'webvnc_ticket_required', 'valid WebVNC bridge ticket required')

/** The ticket an agent upgrade carries: `Authorization: Bearer <ticket>`, else `?ticket=`. */
export function presentedTicket(request: Request): string | undefined {
  const header = request.headers.get('authorization')
  const match = header ? /^bearer (\S+)$/i.exec(header.trim()) : null
  if (match) return match[1]
  return new URL(request.url).searchParams.get('ticket') ?? undefined
}

/**
 * Spends a ticket: deleted on first use, even when it turns out expired. Answers the
 * lease it was minted for; 401 when malformed, unknown, spent or expired; 404 when the
 * path names another lease (by ID or slug).
 */
export function consumeTicket(storage: FleetStorage, ticket: string | undefined, ref: string, now: Date): LeaseRecord {
  if (!ticket || !WEBVNC_TICKET_PATTERN.test(ticket)) throw ticketRequired()
  const row = storage.one<{ lease_id: string; expires_at: number }>(
    'DELETE FROM webvnc_tickets WHERE ticket = ? RETURNING lease_id, expires_at',
    ticket,
  )
  if (!row || row.expires_at <= now.getTime()) throw ticketRequired()
  const lease = getLeaseRecord(storage, row.lease_id)
  if (!lease || (ref !== lease.id && ref !== lease.slug)) throw new ApiError(404, 'not_found', `lease ${ref} not found`)
  return lease
}

const SAFE_ARG = /^[A-Za-z0-9_./:@=-]+$/
const quoteArg = (arg: string) => (SAFE_ARG.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)

/** The command that starts the bridge for `lease` (shown by status, reset and the viewer's 409). */
export function bridgeCommand(lease: LeaseRecord): string {
  const args = ['crabbox', 'webvnc', '--provider', lease.provider, '--target', lease.target || 'linux', '--id', lease.slug || lease.id]
  if (lease.target === 'windows' && lease.windowsMode && lease.windowsMode !== 'normal') args.push('--windows-mode', lease.windowsMode)
  args.push('--open')
  return args.map(quoteArg).join(' ')
}

/** The caller's name as the controller label shows it: the owner's part before `@`. */
export const viewerLabel = (identity: Identity): string => identity.owner.split('@')[0] ?? ''

export const relayFacts = (lease: LeaseRecord, extra: Omit<RelayFacts, 'leaseID'> = {}): RelayFacts => ({
  leaseID: lease.id,
  command: bridgeCommand(lease),
  ...extra,
})

/** WebVNC status of `lease` as seen by `viewer` (a valid viewer ID, or none). */
export function composeStatus(lease: LeaseRecord, state: RelayState, viewer: string | undefined): WebVncStatus {
  const command = bridgeCommand(lease)
  const viewerID = viewer && VIEWER_ID_PATTERN.test(viewer) ? viewer : ''
  const bridgeConnected = state.agents.length > 0
  const viewerCount = state.viewers.length
  const controlling = state.controllerID !== '' && state.viewers.some((v) => v.id === state.controllerID)
  const controllerID = controlling ? state.controllerID : ''
  const availableViewerSlots = state.agents.filter((a) => !a.viewer).length
  const connected = viewerID !== '' && state.viewers.some((v) => v.id === viewerID)
  const viewerRole = !connected ? 'none' : viewerID === controllerID ? 'controller' : 'observer'
  let message: string
  if (viewerRole === 'controller') message = 'you are controlling'
  else if (controllerID) message = `${state.controllerLabel || 'another viewer'} is controlling`
  else if (bridgeConnected && availableViewerSlots > 0 && viewerCount > 0) message = 'observer slots available'
  else if (bridgeConnected && availableViewerSlots > 0) message = 'bridge connected'
  else if (bridgeConnected) message = 'waiting for an available WebVNC observer slot'
  else message = `WebVNC daemon not running; run: ${command}`
  return {
    leaseID: lease.id,
    slug: lease.slug ?? '',
    bridgeConnected,
    viewerConnected: viewerCount > 0,
    viewerCount,
    observerCount: Math.max(0, viewerCount - (controllerID ? 1 : 0)),
    availableViewerSlots,
    viewerID,
    viewerRole,
    controllerID,
    controllerLabel: controllerID ? state.controllerLabel : '',
    command,
    events: state.events,
    message,
  }
}

async function relayJson<T>(response: Response): Promise<T> {
  const body = (await response.json()) as T & { error?: string; message?: string }
  if (!response.ok) throw new ApiError(response.status, body.error ?? 'internal', body.message)
  return body
}

export async function webVncStatus(deps: FleetDeps, lease: LeaseRecord, viewer: string | undefined): Promise<WebVncStatus> {
  const state = await relayJson<RelayState>(await callRelay(deps.env, relayFacts(lease), 'state'))
  return composeStatus(lease, state, viewer)
}

export async function resetWebVnc(deps: FleetDeps, lease: LeaseRecord) {
  const result = await relayJson<RelayResetResult>(await callRelay(deps.env, relayFacts(lease), 'reset'))
  return {
    leaseID: lease.id,
    slug: lease.slug ?? '',
    bridgeWasConnected: result.bridgeWasConnected,
    viewerWasConnected: result.viewerWasConnected,
    command: bridgeCommand(lease),
    events: result.state.events,
  }
}

/** Take control for a connected viewer (409 `viewer_not_connected` otherwise); its status after. */
export async function takeControl(deps: FleetDeps, lease: LeaseRecord, viewerID: string, identity: Identity): Promise<WebVncStatus> {
  const facts = relayFacts(lease, { viewerID, label: viewerLabel(identity) })
  const state = await relayJson<RelayState>(await callRelay(deps.env, facts, 'control'))
  return composeStatus(lease, state, viewerID)
}
