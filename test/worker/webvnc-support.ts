import { env, SELF } from 'cloudflare:test'
import type { RelayState } from '../../worker/bridge/handoff.js'
import { expect } from 'vitest'
import { getLeaseRecord, saveRecord } from '../../worker/fleet/lease-store.js'
import { api, createLease, headersFor, inFleet, type Who } from './broker-support.js'
import { ORIGIN, type Browser } from './portal-support.js'

/** WebVNC tests: desktop leases, tickets, and the two kinds of bridge socket. */

/**
 * A static lease marked as made with a desktop (no provider installs one yet, so the
 * record is edited in the Fleet object's storage).
 */
export async function desktopLease(who: Who, patch: Record<string, unknown> = { desktop: true }): Promise<any> {
  const lease = await createLease(who)
  await inFleet((deps) => {
    const record = getLeaseRecord(deps.storage, lease.id)!
    saveRecord(deps.storage, { ...record, ...patch })
  })
  return { ...lease, ...patch }
}

export async function ticketFor(who: Who, ref: string): Promise<string> {
  const result = await api(who, 'POST', `/v1/leases/${ref}/webvnc/ticket`)
  expect(result.status).toBe(200)
  return result.body.ticket
}

/** A socket with its frames collected in order. */
export interface Peer {
  ws: WebSocket
  id: string
  frames: (string | ArrayBuffer)[]
  closed: Promise<{ code: number; reason: string }>
  /** Waits until at least `n` frames arrived. */
  received(n: number): Promise<(string | ArrayBuffer)[]>
}

function peer(ws: WebSocket, id: string): Peer {
  const frames: (string | ArrayBuffer)[] = []
  let resolveClosed!: (value: { code: number; reason: string }) => void
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (resolveClosed = resolve))
  // Binary frames as ArrayBuffer (the default here is Blob, which reads asynchronously and could reorder).
  ;(ws as unknown as { binaryType: string }).binaryType = 'arraybuffer'
  ws.addEventListener('message', (event) => frames.push(event.data as string | ArrayBuffer))
  ws.addEventListener('close', (event) => resolveClosed({ code: event.code, reason: event.reason }))
  ws.accept()
  return {
    ws,
    id,
    frames,
    closed,
    async received(n) {
      for (let i = 0; i < 800 && frames.length < n; i++) await new Promise((resolve) => setTimeout(resolve, 5))
      return frames
    },
  }
}

export function agentUpgrade(ref: string, ticket?: string, extra: Record<string, string> = {}): Promise<Response> {
  return SELF.fetch(`${ORIGIN}/v1/leases/${ref}/webvnc/agent`, {
    headers: { upgrade: 'websocket', ...(ticket ? { authorization: `Bearer ${ticket}` } : {}), ...extra },
  })
}

export async function openAgent(who: Who, ref: string): Promise<Peer> {
  const response = await agentUpgrade(ref, await ticketFor(who, ref))
  expect(response.status).toBe(101)
  return peer(response.webSocket!, response.headers.get('x-crabbox-agent-id') ?? '')
}

export function viewerUpgrade(caller: Browser | Who, ref: string, viewer?: string, extra: Record<string, string> = {}): Promise<Response> {
  const auth = 'cookie' in caller ? { cookie: caller.cookie, origin: ORIGIN } : headersFor(caller)
  const query = viewer ? `?viewer=${encodeURIComponent(viewer)}` : ''
  return SELF.fetch(`${ORIGIN}/portal/leases/${ref}/vnc/viewer${query}`, { headers: { upgrade: 'websocket', ...auth, ...extra } })
}

export async function openViewer(caller: Browser | Who, ref: string, viewer?: string): Promise<Peer> {
  const response = await viewerUpgrade(caller, ref, viewer)
  if (response.status !== 101) throw new Error(`viewer: ${response.status} ${await response.text()}`)
  return peer(response.webSocket!, response.headers.get('x-crabbox-viewer-id') ?? '')
}

export const text = (frame: string | ArrayBuffer | undefined): string =>
  frame === undefined ? '' : typeof frame === 'string' ? frame : new TextDecoder().decode(frame)

/** Polls until `check` passes (the relay answers on its own schedule). */
export async function eventually<T>(fn: () => Promise<T>, check: (value: T) => boolean): Promise<T> {
  let value = await fn()
  for (let i = 0; i < 100 && !check(value); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    value = await fn()
  }
  return value
}

/** The relay object's own state (agents with their buffered bytes), read past the Fleet object. */
export async function relayState(leaseID: string): Promise<RelayState> {
  const stub = env.BRIDGE_RELAY.get(env.BRIDGE_RELAY.idFromName(leaseID))
  return (await stub.fetch('https://relay.internal/state', { headers: { 'x-crabbox-relay': JSON.stringify({ leaseID }) } })).json()
}

/**
 * Sends a frame from a test socket and waits until the relay has handled it. The tests pace
 * their frames this way because the worker test pool wraps each Durable Object WebSocket
 * event in an asynchronous module lookup, so a burst can reach the relay's handler out of
 * order there (the relay handles each frame synchronously, in the order the runtime hands
 * them over).
 */
export async function sendPaced(from: Peer, frame: string | ArrayBuffer, arrived: () => Promise<boolean>): Promise<void> {
  from.ws.send(frame)
  for (let i = 0; i < 800 && !(await arrived()); i++) await new Promise((resolve) => setTimeout(resolve, 5))
}
