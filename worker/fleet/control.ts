import * as v from 'valibot'
import { CONTROL_CLIENT_TYPES, CONTROL_PROTOCOL, ControlClientMessage, type ControlServerMessage } from '../../src/protocol/control.js'
import { ApiError, describeIssues } from '../../src/protocol/errors.js'
import type { HeartbeatRequest } from '../../src/protocol/leases.js'
import { RUN_LIMITS } from '../../src/protocol/runs.js'
import type { Identity } from '../auth/identity.js'
import type { FleetDeps } from './deps.js'
import { heartbeatLease } from './leases.js'
import { canSeeRun, listRunEvents, peekRun } from './runs.js'
import type { FleetStorage } from './storage.js'

/**
 * The control WebSocket (`/v1/control`) on the hibernation API: the caller's identity
 * and run cursors live in the socket's serialized attachment, so subscriptions survive the
 * object being evicted while sockets stay open.
 *
 * Delivery rule (no gap between backfill and live events): a subscription is a delivery cursor;
 * the broker always sends every event with seq > cursor, in order, then advances the cursor.
 * Subscribe sets the cursor and drains; every append drains. All of it is synchronous SQL
 * plus `ws.send`, so nothing can be appended between reading events and moving the cursor.
 */

const CONTROL_TAG = 'control'
/**
 * Subscriptions per socket; more answer `invalid_message`. Keeps the serialized attachment
 * (identity + cursors) well under the platform's attachment size limit (2 KiB documented).
 */
export const MAX_SUBSCRIPTIONS = 32

export interface ControlAttachment {
  kind: 'control'
  clientID: string
  owner: string
  org: string
  admin: boolean
  /** The identity's namespace (claimed by header, or verified); absent on sockets from before it: claimed. */
  claimed?: boolean
  /** runID → highest seq delivered on this socket. */
  subscriptions: Record<string, number>
}

/** Lease heartbeat as the control socket needs it; the lease module provides it. */
export type ControlHeartbeat = (
  identity: Identity,
  leaseRef: string,
  body: HeartbeatRequest,
) => Promise<{ ok: true; leaseID: string; expiresAt: string } | { ok: false; error: string }>

export interface ControlDeps {
  ctx: DurableObjectState
  storage: FleetStorage
  heartbeat: ControlHeartbeat
}

const send = (ws: WebSocket, message: ControlServerMessage) => ws.send(JSON.stringify(message))

const sendError = (ws: WebSocket, code: 'invalid_message' | 'invalid_json' | 'unknown_type' | 'not_found', message: string) =>
  send(ws, { type: 'error', code, message })

function attachmentOf(ws: WebSocket): ControlAttachment | undefined {
  const attachment = ws.deserializeAttachment() as ControlAttachment | null
  return attachment?.kind === 'control' ? attachment : undefined
}

/** Is this a WebSocket upgrade request? */
export const isUpgrade = (request: Request): boolean => request.headers.get('upgrade')?.toLowerCase() === 'websocket'

/**
 * `GET /v1/control`: 426 unless it is a WebSocket upgrade; otherwise accept a hibernatable
 * socket bound to the caller and greet it with `hello`.
 */
export function openControlSocket(ctx: DurableObjectState, request: Request, identity: Identity): Response {
  if (request.method !== 'GET' || !isUpgrade(request)) {
    return Response.json(
      { error: 'websocket_required', message: 'GET /v1/control with Upgrade: websocket' },
      { status: 426, headers: { upgrade: 'websocket' } },
    )
  }
  const { 0: client, 1: server } = new WebSocketPair()
  const clientID = crypto.randomUUID()
  ctx.acceptWebSocket(server, [CONTROL_TAG])
  const attachment: ControlAttachment = {
    kind: 'control',
    clientID,
    owner: identity.owner,
    org: identity.org,
    admin: identity.admin,
    claimed: identity.claimed,
    subscriptions: {},
  }
  server.serializeAttachment(attachment)
  send(server, { type: 'hello', protocol: CONTROL_PROTOCOL, clientID })
  return new Response(null, { status: 101, webSocket: client })
}

/**
 * Sends `ws` every event of `runID` after its cursor (pages of ≤ 500), moving the cursor.
 * Returns false when the socket could not be written (it is closed with 1011).
 */
function drain(storage: FleetStorage, ws: WebSocket, attachment: ControlAttachment, runID: string): boolean {
  let cursor = attachment.subscriptions[runID]
  if (cursor === undefined) return true
  for (;;) {
    const events = listRunEvents(storage, runID, cursor, RUN_LIMITS.eventsPageMax)
    if (events.length === 0) return true
    cursor = events.at(-1)!.seq
    attachment.subscriptions[runID] = cursor
    try {
      ws.serializeAttachment(attachment)
      send(ws, { type: 'run_events', runID, events, nextSeq: cursor })
    } catch {
      ws.close(1011, 'control send failed')
      return false
    }
    if (events.length < RUN_LIMITS.eventsPageMax) return true
  }
}

/** After any append to `runID`: push what each subscribed, entitled socket has not seen. */
export function pushRunEvents(ctx: DurableObjectState, storage: FleetStorage, runID: string): void {
  const run = peekRun(storage, runID)
  if (!run) return
  for (const ws of ctx.getWebSockets(CONTROL_TAG)) {
    const attachment = attachmentOf(ws)
    if (!attachment || attachment.subscriptions[runID] === undefined || !canSeeRun(identityOf(attachment), run)) continue
    drain(storage, ws, attachment, runID)
  }
}

function identityOf(attachment: ControlAttachment): Identity {
  const claimed = attachment.claimed !== false
  return { owner: attachment.owner, org: attachment.org, admin: attachment.admin, auth: 'bearer', claimed, credential: '' }
}

/** One client frame. Bad frames get an `error` reply and change nothing; the socket stays open. */
export async function handleControlMessage(deps: ControlDeps, ws: WebSocket, raw: string | ArrayBuffer): Promise<void> {
  const attachment = attachmentOf(ws)
  if (!attachment) return
  if (typeof raw !== 'string') return sendError(ws, 'invalid_message', 'expected JSON text')
  let data: unknown
  try {
    data = JSON.parse(raw)
  } catch {
    return sendError(ws, 'invalid_json', 'invalid JSON')
  }
  const type = typeof data === 'object' && data !== null ? (data as { type?: unknown }).type : undefined
  if (typeof type !== 'string' || !(CONTROL_CLIENT_TYPES as readonly string[]).includes(type)) {
    return sendError(
      ws,
      'unknown_type',
      `unknown control message${typeof type === 'string' ? ` type ${JSON.stringify(type.slice(0, 64))}` : ': no "type"'}`,
    )
  }
  const parsed = v.safeParse(ControlClientMessage, data)
  if (!parsed.success) return sendError(ws, 'invalid_message', `${type}: ${describeIssues(parsed.issues)}`)
  const message = parsed.output

  switch (message.type) {
    case 'ping':
      return send(ws, { type: 'pong' })
    case 'subscribe_run': {
      const run = peekRun(deps.storage, message.runID)
      if (!run || !canSeeRun(identityOf(attachment), run)) return sendError(ws, 'not_found', 'run not found')
      if (attachment.subscriptions[run.id] === undefined && Object.keys(attachment.subscriptions).length >= MAX_SUBSCRIPTIONS) {
        return sendError(ws, 'invalid_message', `at most ${MAX_SUBSCRIPTIONS} runs per control socket`)
      }
      // The first page honours `limit`; the reply always comes, even when empty.
      const events = listRunEvents(deps.storage, run.id, message.after, message.limit)
      const cursor = events.at(-1)?.seq ?? message.after
      attachment.subscriptions[run.id] = cursor
      ws.serializeAttachment(attachment)
      send(ws, { type: 'run_events', runID: run.id, events, nextSeq: cursor })
      // Then the rest of the backlog, so nothing between the page and the next append is lost.
      drain(deps.storage, ws, attachment, run.id)
      return
    }
    case 'ack': {
      const cursor = attachment.subscriptions[message.runID]
      // Acks only move a subscription forward: rewinding would resend (duplicate) events.
      if (cursor !== undefined && message.seq > cursor) {
        attachment.subscriptions[message.runID] = message.seq
        ws.serializeAttachment(attachment)
      }
      return
    }
    case 'heartbeat': {
      const body = {
        ...(message.idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds: message.idleTimeoutSeconds } : {}),
        ...(message.telemetry !== undefined ? { telemetry: message.telemetry } : {}),
      }
      const result = await deps.heartbeat(identityOf(attachment), message.leaseID, body)
      if (result.ok) return send(ws, { type: 'heartbeat', leaseID: result.leaseID, ok: true, expiresAt: result.expiresAt })
      return send(ws, { type: 'heartbeat', leaseID: message.leaseID, ok: false, error: result.error })
    }
  }
}

/**
 * Control heartbeats go through the lease module's `heartbeatLease`, so they mean exactly
 * what HTTP heartbeats mean (and never revive an expired lease); its 4xx codes come back
 * as `ok:false` with that code.
 */
function controlDeps(deps: FleetDeps): ControlDeps {
  const heartbeat: ControlHeartbeat = async (identity, leaseRef, body) => {
    try {
      const lease = await heartbeatLease(deps, identity, leaseRef, body)
      return { ok: true, leaseID: lease.id, expiresAt: lease.expiresAt }
    } catch (error) {
      if (error instanceof ApiError && error.status < 500) return { ok: false, error: error.code }
      throw error
    }
  }
  return { ctx: deps.ctx, storage: deps.storage, heartbeat }
}

/** The object's `webSocketMessage`: one frame; a failing handler never kills the socket. */
export async function onControlMessage(deps: FleetDeps, ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
  try {
    await handleControlMessage(controlDeps(deps), ws, message)
  } catch (error) {
    // The client sees an error frame instead.
    console.error('control message failed', error)
    try {
      sendError(ws, 'invalid_message', 'the broker could not handle that message')
    } catch {
      // socket already gone
    }
  }
}

/** The object's `webSocketClose`: completes the close handshake. */
export function onControlClose(ws: WebSocket, code: number): void {
  try {
    ws.close(code === 1005 || code === 1006 ? 1000 : code, 'bye')
  } catch {
    // already closed
  }
}
