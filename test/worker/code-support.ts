import { env, runInDurableObject, SELF } from 'cloudflare:test'
import { expect } from 'vitest'
import { api, type Who } from './broker-support.js'
import { ORIGIN } from './portal-support.js'
import { desktopLease } from './webvnc-support.js'
import type { BridgeRelay } from '../../worker/bridge/relay.js'

/** Code bridge tests: code leases, tickets, the agent socket speaking JSON frames. */

export const codeLease = (who: Who, patch: Record<string, unknown> = {}) => desktopLease(who, { code: true, ...patch })

export async function codeTicket(who: Who, ref: string): Promise<string> {
  const result = await api(who, 'POST', `/v1/leases/${ref}/code/ticket`)
  expect(result.status).toBe(200)
  return result.body.ticket
}

export function codeAgentUpgrade(ref: string, ticket?: string): Promise<Response> {
  return SELF.fetch(`${ORIGIN}/v1/leases/${ref}/code/agent`, {
    headers: { upgrade: 'websocket', ...(ticket ? { authorization: `Bearer ${ticket}` } : {}) },
  })
}

/** A socket whose frames are collected: JSON frames parsed, others as they came. */
export interface Socket {
  ws: WebSocket
  frames: any[]
  closed: Promise<{ code: number; reason: string }>
  /** Waits for the first frame (after `from`) that `match` accepts. */
  next(match: (frame: any) => boolean, from?: number): Promise<any>
}

export function socket(ws: WebSocket, parse: boolean): Socket {
  const frames: any[] = []
  let resolveClosed!: (value: { code: number; reason: string }) => void
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (resolveClosed = resolve))
  ;(ws as unknown as { binaryType: string }).binaryType = 'arraybuffer'
  ws.addEventListener('message', (event) => frames.push(parse ? JSON.parse(event.data as string) : event.data))
  ws.addEventListener('close', (event) => resolveClosed({ code: event.code, reason: event.reason }))
  ws.accept()
  return {
    ws,
    frames,
    closed,
    async next(match, from = 0) {
      for (let i = 0; i < 1000; i++) {
        const found = frames.slice(from).find(match)
        if (found) return found
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      throw new Error(`no matching frame; got ${JSON.stringify(frames).slice(0, 400)}`)
    },
  }
}

export async function openCodeAgent(who: Who, ref: string): Promise<Socket> {
  const response = await codeAgentUpgrade(ref, await codeTicket(who, ref))
  expect(response.status).toBe(101)
  return socket(response.webSocket!, true)
}

export const b64 = (text: string | Uint8Array) =>
  btoa(String.fromCharCode(...(typeof text === 'string' ? new TextEncoder().encode(text) : text)))
export const unb64 = (text: string) => new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)))

/** Polls until `check` passes. */
export async function until(check: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 400 && !(await check()); i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

/** What the code relay of one lease holds in memory: chunked messages being joined, requests in flight. */
interface CodeRelayMemory {
  chunks: Map<string, { parts: Uint8Array[] }>
  pending: Map<string, { stream?: unknown }>
}

/**
 * Sends an agent frame and waits until the lease's code relay has handled it, as `handled` sees
 * its memory. A burst of frames from a test socket can reach the relay out of order in the
 * worker test pool (see `sendPaced` in webvnc-support.ts); a real agent's socket keeps its order.
 */
export async function sendToRelay(
  agent: Socket,
  leaseID: string,
  frame: object,
  handled: (relay: CodeRelayMemory) => boolean,
): Promise<void> {
  agent.ws.send(JSON.stringify(frame))
  const stub = env.BRIDGE_RELAY.get(env.BRIDGE_RELAY.idFromName(leaseID)) as DurableObjectStub<BridgeRelay>
  const done = () => runInDurableObject(stub, (relay: BridgeRelay) => handled((relay as unknown as { code: CodeRelayMemory }).code))
  for (let i = 0; i < 800 && !(await done()); i++) await new Promise((resolve) => setTimeout(resolve, 5))
}
