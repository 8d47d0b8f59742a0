import * as v from 'valibot'
import {
  CONTROL_CLIENT_TYPES,
  CONTROL_PROTOCOL,
  ControlClientMessage,
  type ControlServerMessage,
  type SubscribeRunMessage,
} from '../../src/protocol/control.js'
import { ApiError, describeIssues } from '../../src/protocol/errors.js'
import type { HeartbeatRequest } from '../../src/protocol/leases.js'
import { RUN_LIMITS, utf8Length, type RunEventRecord } from '../../src/protocol/runs.js'
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
 *
 * Fan-out limits (docs/security.md): a caller holds at most SOCKETS_PER_CALLER sockets, counted
 * by a per-caller tag given at accept time (tags survive hibernation); a run has at most
 * SUBSCRIBERS_PER_RUN subscribed sockets. Subscriptions come after the accept, so they cannot
 * be tags: an in-memory index run → sockets, built from the attachments on first use after the
 * object starts (or wakes from hibernation), lets an append visit only that run's subscribers.
 */

const CONTROL_TAG = 'control'
/**
 * Subscriptions per socket; more answer `invalid_message`. Keeps the serialized attachment
 * (identity + cursors) well under the platform's attachment size limit.
 */
export const MAX_SUBSCRIPTIONS = 32
/** Control sockets one caller (owner identity, whatever its org) may hold; the next upgrade is 429 `too_many_sockets`. */
export const SOCKETS_PER_CALLER = 20
/** Sockets subscribed to one run; the next `subscribe_run` gets an error frame `too_many_subscribers`. */
export const SUBSCRIBERS_PER_RUN = 100
/** One `run_events` frame, serialized (UTF-8 bytes), stays under this; a long backlog continues in the next frame. */
export const FRAME_MAX_BYTES = 1024 * 1024
/** Events read from SQL at a time while building frames: bounds what one read holds in memory. */
const READ_CHUNK = 64
/** `WebSocket.readyState` of an open socket. */
const OPEN = 1

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

type ControlErrorCode = 'invalid_message' | 'invalid_json' | 'unknown_type' | 'not_found' | 'too_many_subscribers'

const sendError = (ws: WebSocket, code: ControlErrorCode, message: string) => send(ws, { type: 'error', code, message })

function attachmentOf(ws: WebSocket): ControlAttachment | undefined {
  const attachment = ws.deserializeAttachment() as ControlAttachment | null
  return attachment?.kind === 'control' ? attachment : undefined
}

/** Is this a WebSocket upgrade request? */
export const isUpgrade = (request: Request): boolean => request.headers.get('upgrade')?.toLowerCase() === 'websocket'

/**
 * The tag that counts a caller's sockets: a hash of the identity without its org (a caller
 * does not get more sockets by naming other orgs). Tags are short and fixed at accept time.
 */
async function callerTag(identity: Identity): Promise<string> {
  const key = JSON.stringify(
    Object.entries(identity)
      .filter(([name]) => name !== 'org')
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  )
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(key)))
  return `caller:${Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('')}`
}

/**
 * Can `ws` carry this attachment, and the same with every subscription slot taken? Tried on
 * the socket before it is accepted, so an identity too large for the platform's attachment
 * limit is refused with a 4xx instead of failing after the 101.
 */
function attachmentFits(ws: WebSocket, attachment: ControlAttachment): boolean {
  const full: Record<string, number> = {}
  for (let i = 0; i < MAX_SUBSCRIPTIONS; i++) full[`run_${String(i).padStart(60, '0')}`] = Number.MAX_SAFE_INTEGER
  try {
    ws.serializeAttachment({ ...attachment, subscriptions: full })
    ws.serializeAttachment(attachment)
    return true
  } catch {
    return false
  }
}

/**
 * `GET /v1/control`: 426 unless it is a WebSocket upgrade; 400 `invalid_identity` when the
 * identity cannot be stored with the socket; 429 `too_many_sockets` past the caller's limit;
 * otherwise accept a hibernatable socket bound to the caller and greet it with `hello`.
 */
export async function openControlSocket(ctx: DurableObjectState, request: Request, identity: Identity): Promise<Response> {
  if (request.method !== 'GET' || !isUpgrade(request)) {
    return Response.json(
      { error: 'websocket_required', message: 'GET /v1/control with Upgrade: websocket' },
      { status: 426, headers: { upgrade: 'websocket' } },
    )
  }
  const tag = await callerTag(identity)
  const { 0: client, 1: server } = new WebSocketPair()
  const clientID = crypto.randomUUID()
  const attachment: ControlAttachment = {
    kind: 'control',
    clientID,
    owner: identity.owner,
    org: identity.org,
    admin: identity.admin,
    claimed: identity.claimed,
    subscriptions: {},
  }
  if (!attachmentFits(server, attachment)) throw new ApiError(400, 'invalid_identity', 'owner or org too long for a control socket')
  // No await from the count to the accept: concurrent upgrades cannot both take the last slot.
  if (ctx.getWebSockets(tag).length >= SOCKETS_PER_CALLER) {
    throw new ApiError(429, 'too_many_sockets', `at most ${SOCKETS_PER_CALLER} control sockets per caller; close one first`)
  }
  ctx.acceptWebSocket(server, [CONTROL_TAG, tag])
  send(server, { type: 'hello', protocol: CONTROL_PROTOCOL, clientID })
  return new Response(null, { status: 101, webSocket: client })
}

/** runID → (clientID → socket): the subscribed sockets of each run. */
type SubscriberIndex = Map<string, Map<string, WebSocket>>
/** One index per object instance, keyed by the storage handle its constructor creates. */
const indexes = new WeakMap<FleetStorage, SubscriberIndex>()

/**
 * The object instance's subscriber index. Memory does not survive hibernation (waking creates
 * a new instance), so the first use rebuilds it once from the open sockets' attachments.
 */
function subscriberIndex(ctx: DurableObjectState, storage: FleetStorage): SubscriberIndex {
  let index = indexes.get(storage)
  if (index) return index
  index = new Map()
  for (const ws of ctx.getWebSockets(CONTROL_TAG)) {
    const attachment = attachmentOf(ws)
    if (!attachment) continue
    for (const runID of Object.keys(attachment.subscriptions)) addSubscriber(index, runID, attachment.clientID, ws)
  }
  indexes.set(storage, index)
  return index
}

function addSubscriber(index: SubscriberIndex, runID: string, clientID: string, ws: WebSocket): void {
  let sockets = index.get(runID)
  if (!sockets) index.set(runID, (sockets = new Map()))
  sockets.set(clientID, ws)
}

function removeSubscriber(index: SubscriberIndex, runID: string, clientID: string): void {
  const sockets = index.get(runID)
  if (!sockets) return
  sockets.delete(clientID)
  if (sockets.size === 0) index.delete(runID)
}

/** Subscribers of `runID` whose sockets are still open (closed ones are dropped from the index). */
function openSubscribers(index: SubscriberIndex, runID: string): number {
  const sockets = index.get(runID)
  if (!sockets) return 0
  for (const [clientID, ws] of sockets) if (ws.readyState !== OPEN) removeSubscriber(index, runID, clientID)
  return index.get(runID)?.size ?? 0
}

/** Forgets a closed socket's subscriptions. */
function forgetSocket(storage: FleetStorage, ws: WebSocket): void {
  const attachment = attachmentOf(ws)
  const index = indexes.get(storage)
  if (!attachment || !index) return
  for (const runID of Object.keys(attachment.subscriptions)) removeSubscriber(index, runID, attachment.clientID)
}

/** Reads a run's events after `after` in small chunks, one at a time. */
function eventReader(storage: FleetStorage, runID: string, after: number): () => RunEventRecord | undefined {
  let chunk: RunEventRecord[] = []
  let next = 0
  let done = false
  return () => {
    if (next === chunk.length && !done) {
      chunk = listRunEvents(storage, runID, chunk.at(-1)?.seq ?? after, READ_CHUNK)
      next = 0
      done = chunk.length < READ_CHUNK
    }
    return next < chunk.length ? chunk[next++] : undefined
  }
}

/** A `run_events` frame as text, built from events serialized once (so its size is known as it grows). */
const frameText = (runID: string, events: string[], nextSeq: number) =>
  `{"type":"run_events","runID":${JSON.stringify(runID)},"events":[${events.join(',')}],"nextSeq":${nextSeq}}`

/**
 * Sends `ws` every event of `runID` after its cursor, moving the cursor, in frames of at most
 * 500 events and FRAME_MAX_BYTES. `first` (subscribe) caps the first frame at `limit` events
 * and sends it even when empty. Returns false when the socket could not be written (it is
 * closed with 1011).
 */
function drain(storage: FleetStorage, ws: WebSocket, attachment: ControlAttachment, runID: string, first?: { limit: number }): boolean {
  let cursor = attachment.subscriptions[runID]
  if (cursor === undefined) return true
  const read = eventReader(storage, runID, cursor)
  const budget = FRAME_MAX_BYTES - utf8Length(frameText(runID, [], Number.MAX_SAFE_INTEGER))
  let frame: string[] = []
  let bytes = 0
  let maxEvents = first?.limit ?? RUN_LIMITS.eventsPageMax
  let mustSend = first !== undefined
  const flush = (): boolean => {
    attachment.subscriptions[runID] = cursor!
    try {
      ws.serializeAttachment(attachment)
      ws.send(frameText(runID, frame, cursor!))
    } catch {
      try {
        ws.close(1011, 'control send failed')
      } catch {
        // already closed
      }
      return false
    }
    frame = []
    bytes = 0
    maxEvents = RUN_LIMITS.eventsPageMax
    mustSend = false
    return true
  }
  for (let event = read(); event; event = read()) {
    const text = JSON.stringify(event)
    const size = utf8Length(text) + 1 // and its comma
    if (frame.length > 0 && (frame.length >= maxEvents || bytes + size > budget) && !flush()) return false
    frame.push(text)
    bytes += size
    cursor = event.seq
  }
  return frame.length > 0 || mustSend ? flush() : true
}

/** After any append to `runID`: push what each subscribed, entitled socket has not seen. Visits only that run's subscribers. */
export function pushRunEvents(ctx: DurableObjectState, storage: FleetStorage, runID: string): void {
  const index = subscriberIndex(ctx, storage)
  const sockets = index.get(runID)
  if (!sockets) return
  const run = peekRun(storage, runID)
  if (!run) return
  for (const [clientID, ws] of [...sockets]) {
    const attachment = ws.readyState === OPEN ? attachmentOf(ws) : undefined
    if (!attachment || attachment.subscriptions[runID] === undefined) {
      removeSubscriber(index, runID, clientID)
      continue
    }
    if (!canSeeRun(identityOf(attachment), run)) continue
    if (!drain(storage, ws, attachment, runID)) removeSubscriber(index, runID, clientID)
  }
}

function identityOf(attachment: ControlAttachment): Identity {
  const claimed = attachment.claimed !== false
  return { owner: attachment.owner, org: attachment.org, admin: attachment.admin, auth: 'bearer', claimed, credential: '' }
}

/**
 * `subscribe_run`: checks visibility and the limits, sets the cursor to `after`, then sends
 * the first frame (≤ `limit` events, even when empty) and the rest of the backlog.
 */
function subscribe(
  deps: ControlDeps,
  ws: WebSocket,
  attachment: ControlAttachment,
  message: v.InferOutput<typeof SubscribeRunMessage>,
): void {
  const run = peekRun(deps.storage, message.runID)
  if (!run || !canSeeRun(identityOf(attachment), run)) return sendError(ws, 'not_found', 'run not found')
  const index = subscriberIndex(deps.ctx, deps.storage)
  if (attachment.subscriptions[run.id] === undefined) {
    if (Object.keys(attachment.subscriptions).length >= MAX_SUBSCRIPTIONS) {
      return sendError(ws, 'invalid_message', `at most ${MAX_SUBSCRIPTIONS} runs per control socket`)
    }
    if (openSubscribers(index, run.id) >= SUBSCRIBERS_PER_RUN) {
      return sendError(ws, 'too_many_subscribers', `run ${run.id} already has ${SUBSCRIBERS_PER_RUN} subscribed sockets`)
    }
  }
  attachment.subscriptions[run.id] = message.after
  addSubscriber(index, run.id, attachment.clientID, ws)
  if (!drain(deps.storage, ws, attachment, run.id, { limit: message.limit })) removeSubscriber(index, run.id, attachment.clientID)
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
    case 'subscribe_run':
      return subscribe(deps, ws, attachment, message)
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

/** The object's `webSocketClose`: forgets the socket's subscriptions and completes the close handshake. */
export function onControlClose(deps: FleetDeps, ws: WebSocket, code: number): void {
  forgetSocket(deps.storage, ws)
  try {
    ws.close(code === 1005 || code === 1006 ? 1000 : code, 'bye')
  } catch {
    // already closed
  }
}

/** The object's `webSocketError`: the socket is gone; forget its subscriptions. */
export function onControlError(deps: FleetDeps, ws: WebSocket): void {
  forgetSocket(deps.storage, ws)
}
