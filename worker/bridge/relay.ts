import { DurableObject } from 'cloudflare:workers'
import { VIEWER_ID_PATTERN, type WebVncEvent, type WebVncEventName } from '../../src/protocol/webvnc.js'
import type { Env } from '../env.js'
import { CodeRelay } from './code-relay.js'
import { egressFetch, egressGone, egressMessage, type EgressAttachment } from './egress-relay.js'
import { RELAY_HEADER, type RelayFacts, type RelayResetResult, type RelayState } from './handoff.js'

/**
 * The WebVNC relay of one lease: a Durable Object of its own per lease (named by the lease
 * ID), so screen traffic never waits behind the Fleet object's lease and run writes. It
 * holds the sockets and nothing else: the Fleet object checks the caller, the lease and the
 * one-use ticket, then the edge hands the upgrade over here (worker/bridge/handoff.ts).
 *
 * Agents are the CLI bridge's sockets (one per bridge slot); each carries raw RFB bytes of
 * one VNC connection on the runner. A viewer (a portal page) claims one idle agent; from
 * then on bytes go both ways between that pair, in order. Agent bytes that arrive before
 * a viewer claims the agent wait in a buffer of at most MAX_AGENT_BUFFER_BYTES (past it,
 * the buffer is dropped); the buffer is kept in the object's storage, so it survives
 * hibernation. A viewer leaving closes its agent (the CLI dials a fresh one); an agent
 * leaving closes its viewer. The first viewer controls; others observe until one takes
 * control. Sockets use the hibernation API: the pairing lives in socket attachments and
 * the controller and events in storage, so an idle relay costs nothing.
 */

/** Agent bytes held for a viewer that has not claimed the agent yet; more drops the buffer. */
export const MAX_AGENT_BUFFER_BYTES = 1024 * 1024
/** Open agents and viewers per lease (the CLI bridge holds 4 agents); one more is 429 `too_many_sockets`. */
export const MAX_AGENTS = 16
export const MAX_VIEWERS = 16
/** Events kept (and shown by status). */
export const MAX_EVENTS = 12
export const CloseReason = {
  reset: 'WebVNC reset requested',
  viewerGone: 'WebVNC viewer disconnected',
  agentGone: 'WebVNC bridge disconnected',
  viewerReplaced: 'WebVNC viewer replaced',
} as const

type AgentAttachment = { kind: 'agent'; id: string; viewer?: string; closed?: boolean }
type ViewerAttachment = { kind: 'viewer'; id: string; agent: string; label: string; closed?: boolean }
type Attachment = AgentAttachment | ViewerAttachment | EgressAttachment
type Frame = string | ArrayBuffer
/** Stored frames: text as it came, binary as bytes (storage keeps typed arrays, not bare buffers). */
type StoredFrame = { text: string } | { bytes: Uint8Array }
interface Buffered {
  frames: StoredFrame[]
  bytes: number
}

const CLOSING = 2
const CLOSED = 3
const hex = (bytes: number) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')
const frameBytes = (frame: Frame) => (typeof frame === 'string' ? new TextEncoder().encode(frame).byteLength : frame.byteLength)
const json = (body: unknown, status = 200) => Response.json(body, { status })
const tooMany = (what: string, max: number) =>
  json({ error: 'too_many_sockets', message: `this lease already has ${max} WebVNC ${what} connected; close one or reset` }, 429)

export class BridgeRelay extends DurableObject<Env> {
  /** The code bridge's sockets and requests (worker/bridge/code-relay.ts). */
  private readonly code = new CodeRelay(this.ctx)

  override async fetch(request: Request): Promise<Response> {
    const facts = JSON.parse(request.headers.get(RELAY_HEADER) ?? '{}') as RelayFacts
    const path = new URL(request.url).pathname
    if (CodeRelay.handles(path)) return this.code.fetch(path, request)
    // Mediated egress shares the lease's relay object (worker/bridge/egress-relay.ts).
    if (path.startsWith('/egress/')) return egressFetch(this.ctx, path, facts)
    switch (path) {
      case '/agent':
        return this.openAgent()
      case '/viewer':
        return this.openViewer(facts)
      case '/state':
        return json(this.state())
      case '/reset':
        return json(this.reset())
      case '/control':
        return this.takeControl(facts)
      default:
        return json({ error: 'not_found' }, 404)
    }
  }

  // ---- sockets --------------------------------------------------------------------

  private openAgent(): Response {
    if (this.live('agent').length >= MAX_AGENTS) return tooMany('agents', MAX_AGENTS)
    const { 0: client, 1: server } = new WebSocketPair()
    const id = `agent_${hex(8)}`
    this.ctx.acceptWebSocket(server, ['agent', `agent:${id}`])
    server.serializeAttachment({ kind: 'agent', id } satisfies AgentAttachment)
    this.record('bridge_connected')
    return new Response(null, { status: 101, webSocket: client, headers: { 'x-crabbox-agent-id': id } })
  }

  private openViewer(facts: RelayFacts): Response {
    const agent = this.live('agent').find((ws) => !(ws.deserializeAttachment() as AgentAttachment).viewer)
    if (!agent) {
      const command = facts.command ?? ''
      return json(
        {
          error: 'webvnc_bridge_missing',
          message: `No WebVNC backend is available yet; start or refresh the bridge with: ${command}`,
          command,
        },
        409,
      )
    }
    const id = facts.viewerID && VIEWER_ID_PATTERN.test(facts.viewerID) ? facts.viewerID : `viewer_${hex(8)}`
    const others = this.live('viewer').filter((ws) => (ws.deserializeAttachment() as ViewerAttachment).id !== id)
    if (others.length >= MAX_VIEWERS) return tooMany('viewers', MAX_VIEWERS)
    // A page that reconnects with its ID replaces its old socket, if that is still open.
    for (const old of this.live(`viewer:${id}`)) {
      const oldAgent = (old.deserializeAttachment() as ViewerAttachment).agent
      this.closeViewer(old, 1012, CloseReason.viewerReplaced)
      for (const ws of this.live(`agent:${oldAgent}`)) this.closeAgent(ws, 1011, CloseReason.viewerGone)
    }
    const { 0: client, 1: server } = new WebSocketPair()
    const agentAttachment = agent.deserializeAttachment() as AgentAttachment
    this.ctx.acceptWebSocket(server, ['viewer', `viewer:${id}`])
    server.serializeAttachment({ kind: 'viewer', id, agent: agentAttachment.id, label: facts.label ?? '' } satisfies ViewerAttachment)
    agent.serializeAttachment({ ...agentAttachment, viewer: id } satisfies AgentAttachment)
    const controller = this.controller()
    if (!controller.id || !this.live(`viewer:${controller.id}`).length) this.setController(id, facts.label ?? '')
    this.record('viewer_connected')
    const buffered = this.takeBuffer(agentAttachment.id)
    for (const frame of buffered) server.send(frame)
    return new Response(null, { status: 101, webSocket: client, headers: { 'x-crabbox-viewer-id': id } })
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    if (CodeRelay.owns(ws)) return this.code.message(ws, message)
    const self = ws.deserializeAttachment() as Attachment | null
    if (!self || self.closed) return
    if (self.kind === 'egress') return egressMessage(this.ctx, self, message)
    if (self.kind === 'viewer') {
      const agent = this.live(`agent:${self.agent}`)[0]
      agent?.send(message)
      return
    }
    // Claimed: straight to the viewer (gone viewers close their agent, so a miss is a frame for no one).
    if (self.viewer) this.live(`viewer:${self.viewer}`)[0]?.send(message)
    else this.buffer(self.id, message)
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    if (CodeRelay.owns(ws)) return this.code.gone(ws, code, reason)
    this.gone(ws)
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, 'bye')
    } catch {
      // already closed
    }
  }

  override webSocketError(ws: WebSocket): void {
    if (CodeRelay.owns(ws)) return this.code.gone(ws, 1011, 'error')
    this.gone(ws)
  }

  /** A socket closed by its peer: its partner goes too, and the events say so. */
  private gone(ws: WebSocket): void {
    const self = ws.deserializeAttachment() as Attachment | null
    if (!self || self.closed) return
    if (self.kind === 'egress') return egressGone(this.ctx, ws, self)
    ws.serializeAttachment({ ...self, closed: true })
    if (self.kind === 'agent') {
      this.dropBuffer(self.id)
      this.record('bridge_disconnected')
      const viewer = self.viewer ? this.live(`viewer:${self.viewer}`)[0] : undefined
      if (viewer) this.closeViewer(viewer, 1011, CloseReason.agentGone)
      return
    }
    this.afterViewer(self)
    const agent = this.live(`agent:${self.agent}`)[0]
    if (agent) this.closeAgent(agent, 1011, CloseReason.viewerGone)
    this.record('viewer_disconnected')
    this.record('bridge_reset')
  }

  /** Closes a viewer from this side; control passes to the longest-connected viewer left. */
  private closeViewer(ws: WebSocket, code: number, reason: string): void {
    const self = ws.deserializeAttachment() as ViewerAttachment
    ws.serializeAttachment({ ...self, closed: true })
    ws.close(code, reason)
    this.afterViewer(self)
  }

  private closeAgent(ws: WebSocket, code: number, reason: string): void {
    const self = ws.deserializeAttachment() as AgentAttachment
    ws.serializeAttachment({ ...self, closed: true })
    this.dropBuffer(self.id)
    ws.close(code, reason)
  }

  private afterViewer(viewer: ViewerAttachment): void {
    if (this.controller().id !== viewer.id) return
    const next = this.live('viewer')[0]?.deserializeAttachment() as ViewerAttachment | undefined
    if (next) this.setController(next.id, next.label)
    else this.setController('', '')
  }

  /**
   * Sockets with `tag` that neither side has closed. (A socket just accepted may not read
   * as open until its 101 has gone out; it already takes sends.)
   */
  private live(tag: string): WebSocket[] {
    return this.ctx
      .getWebSockets(tag)
      .filter((ws) => ws.readyState !== CLOSING && ws.readyState !== CLOSED && !(ws.deserializeAttachment() as Attachment | null)?.closed)
  }

  // ---- control, reset, state ------------------------------------------------------

  private takeControl(facts: RelayFacts): Response {
    const id = facts.viewerID ?? ''
    if (!this.live(`viewer:${id}`).length) return json({ error: 'viewer_not_connected', message: `viewer ${id} is not connected` }, 409)
    this.setController(id, facts.label ?? '')
    this.record('control_taken')
    return json(this.state())
  }

  private reset(): RelayResetResult {
    const agents = this.live('agent')
    const viewers = this.live('viewer')
    for (const ws of viewers) this.closeViewer(ws, 1012, CloseReason.reset)
    for (const ws of agents) this.closeAgent(ws, 1012, CloseReason.reset)
    for (const [key] of this.ctx.storage.kv.list({ prefix: 'buffer:' })) this.ctx.storage.kv.delete(key)
    this.setController('', '')
    this.record('reset', CloseReason.reset)
    return { bridgeWasConnected: agents.length > 0, viewerWasConnected: viewers.length > 0, state: this.state() }
  }

  private state(): RelayState {
    const controller = this.controller()
    const agents = this.live('agent').map((ws) => {
      const a = ws.deserializeAttachment() as AgentAttachment
      const buffered = this.ctx.storage.kv.get<Buffered>(`buffer:${a.id}`)?.bytes ?? 0
      return a.viewer ? { id: a.id, viewer: a.viewer, buffered } : { id: a.id, buffered }
    })
    const viewers = this.live('viewer').map((ws) => {
      const a = ws.deserializeAttachment() as ViewerAttachment
      return { id: a.id, agent: a.agent, label: a.label }
    })
    return { agents, viewers, controllerID: controller.id, controllerLabel: controller.label, events: this.events() }
  }

  private controller(): { id: string; label: string } {
    return this.ctx.storage.kv.get<{ id: string; label: string }>('controller') ?? { id: '', label: '' }
  }

  private setController(id: string, label: string): void {
    this.ctx.storage.kv.put('controller', { id, label })
  }

  private events(): WebVncEvent[] {
    return this.ctx.storage.kv.get<WebVncEvent[]>('events') ?? []
  }

  private record(event: WebVncEventName, reason?: string): void {
    const entry: WebVncEvent = { at: new Date().toISOString(), event, ...(reason ? { reason } : {}) }
    this.ctx.storage.kv.put('events', [...this.events(), entry].slice(-MAX_EVENTS))
  }

  // ---- the agent buffer ----------------------------------------------------------

  private buffer(agentID: string, frame: Frame): void {
    const key = `buffer:${agentID}`
    const held = this.ctx.storage.kv.get<Buffered>(key) ?? { frames: [], bytes: 0 }
    const bytes = held.bytes + frameBytes(frame)
    if (bytes > MAX_AGENT_BUFFER_BYTES) this.ctx.storage.kv.delete(key)
    else {
      const stored: StoredFrame = typeof frame === 'string' ? { text: frame } : { bytes: new Uint8Array(frame) }
      this.ctx.storage.kv.put(key, { frames: [...held.frames, stored], bytes } satisfies Buffered)
    }
  }

  private takeBuffer(agentID: string): Frame[] {
    const held = this.ctx.storage.kv.get<Buffered>(`buffer:${agentID}`)
    this.dropBuffer(agentID)
    return (held?.frames ?? []).map((f) => ('text' in f ? f.text : f.bytes.slice().buffer))
  }

  private dropBuffer(agentID: string): void {
    this.ctx.storage.kv.delete(`buffer:${agentID}`)
  }
}
