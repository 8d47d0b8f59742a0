import * as v from 'valibot'
import {
  CODE_CHUNK_BYTES,
  CODE_CLOSE,
  CODE_CLOSE_REASON,
  CODE_DROPPED_RESPONSE_HEADERS,
  CODE_MAX_REQUEST_BYTES,
  CODE_RESPONSE_TIMEOUT_MS,
  CodeAgentFrame,
  forwardedRequestHeaders,
  type CodeRelayFrame,
} from '../../src/protocol/code.js'
import { RELAY_HEADER, type RelayFacts } from './handoff.js'

/**
 * The code bridge's half of a lease's relay object (worker/bridge/relay.ts hands it every
 * `/code-*` operation and every code socket). One agent socket per lease, from `crabbox
 * code`: the portal's HTTP requests under `/portal/leases/{id}/code/` go to it as `http`
 * frames and wait (at most CODE_RESPONSE_TIMEOUT_MS) for its answer, whole or streamed
 * (`http_start`, `http_body`…, `http_end`); each browser WebSocket is a `ws_open` and then
 * `ws_data` frames both ways (payloads above CODE_CHUNK_BYTES as `ws_start`, `ws_body`…,
 * `ws_end`). Bodies are base64. A newer agent replaces the old one (closed 1012); an agent
 * leaving closes the browser sockets (1011) and fails the requests in flight (502).
 *
 * Requests in flight and chunks being joined are held in memory: a request in flight keeps
 * the object awake. The sockets use the hibernation API, their IDs in socket attachments.
 */

/** Browser sockets per lease (VS Code opens a few); one more is 429 `too_many_sockets`. */
export const MAX_CODE_VIEWERS = 32
/** A chunked WebSocket message from the agent is joined up to this size; a larger one is dropped. */
export const MAX_CHUNKED_MESSAGE_BYTES = 16 * 1024 * 1024

type CodeAttachment = { kind: 'code-agent' | 'code-viewer'; id: string; closed?: boolean }

interface Pending {
  resolve: (response: Response) => void
  timer: ReturnType<typeof setTimeout>
  stream?: WritableStreamDefaultWriter<Uint8Array>
}

const CLOSING = 2
const CLOSED = 3
const json = (body: unknown, status = 200) => Response.json(body, { status })
const proxyError = (message: string, status = 502) => json({ error: 'code_proxy_error', message }, status)

/** A VS Code-compatible policy for the proxied editor: its scripts, workers, web views and sockets, from this origin. */
export const CODE_CSP = [
  "default-src 'self'",
  "script-src 'self' 'unsafe-eval' 'unsafe-inline' blob:",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob: https:",
  "font-src 'self' data: blob:",
  "media-src 'self' data: blob:",
  "connect-src 'self' ws: wss: https:",
  "worker-src 'self' data: blob:",
  "frame-src 'self' blob: data: https:",
  "manifest-src 'self'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'self'",
].join('; ')

export function toBase64(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}

export function fromBase64(text: string): Uint8Array {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

/** The agent's response headers as the browser gets them: hop and encoding headers dropped, our CSP set. */
export function responseHeaders(from: Record<string, string> = {}): Headers {
  const headers = new Headers()
  for (const [name, value] of Object.entries(from)) {
    const key = name.toLowerCase()
    if ((CODE_DROPPED_RESPONSE_HEADERS as readonly string[]).includes(key)) continue
    try {
      headers.append(key, value)
    } catch {
      // A header the runtime refuses is left out.
    }
  }
  if ((headers.get('content-type') ?? '').toLowerCase().includes('text/html')) headers.set('cache-control', 'no-store, no-transform')
  headers.set('content-security-policy', CODE_CSP)
  return headers
}

const NULL_BODY = new Set([101, 204, 205, 304])

/** Reads a request body of at most `limit` bytes; undefined when it is larger (the rest is cancelled). */
async function readCapped(request: Request, limit: number): Promise<Uint8Array | undefined> {
  if (!request.body) return new Uint8Array()
  const reader = request.body.getReader()
  const parts: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel().catch(() => undefined)
      return undefined
    }
    parts.push(value)
  }
  const out = new Uint8Array(size)
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.byteLength
  }
  return out
}

export class CodeRelay {
  private readonly pending = new Map<string, Pending>()
  private readonly chunks = new Map<string, { frame: 'text' | 'binary'; parts: Uint8Array[]; bytes: number }>()

  constructor(private readonly ctx: DurableObjectState) {}

  static handles(path: string): boolean {
    return path.startsWith('/code-')
  }

  static owns(ws: WebSocket): boolean {
    const kind = (ws.deserializeAttachment() as { kind?: string } | null)?.kind
    return kind === 'code-agent' || kind === 'code-viewer'
  }

  async fetch(path: string, request: Request): Promise<Response> {
    const facts = JSON.parse(request.headers.get(RELAY_HEADER) ?? '{}') as RelayFacts
    switch (path) {
      case '/code-agent':
        return this.openAgent()
      case '/code-viewer':
        return this.openViewer(request, facts)
      case '/code-http':
        return this.proxy(request, facts)
      case '/code-state':
        return json({ agentConnected: this.live('code-agent').length > 0, pendingRequests: this.pending.size })
      default:
        return json({ error: 'not_found' }, 404)
    }
  }

  // ---- sockets --------------------------------------------------------------------

  private openAgent(): Response {
    // A newer bridge wins: the old one, its browser sockets and its requests go.
    for (const old of this.live('code-agent')) this.close(old, CODE_CLOSE.replaced, CODE_CLOSE_REASON.replaced)
    this.dropPeers()
    const { 0: client, 1: server } = new WebSocketPair()
    const id = `agent_${crypto.randomUUID().replace(/-/g, '').slice(0, 16)}`
    this.ctx.acceptWebSocket(server, ['code-agent'])
    server.serializeAttachment({ kind: 'code-agent', id } satisfies CodeAttachment)
    return new Response(null, { status: 101, webSocket: client, headers: { 'x-crabbox-agent-id': id } })
  }

  private openViewer(request: Request, facts: RelayFacts): Response {
    const agent = this.live('code-agent')[0]
    if (!agent) return proxyError('the code bridge is not connected')
    if (this.live('code-viewer').length >= MAX_CODE_VIEWERS)
      return json({ error: 'too_many_sockets', message: `this lease already has ${MAX_CODE_VIEWERS} code bridge sockets open` }, 429)
    const id = crypto.randomUUID()
    const { 0: client, 1: server } = new WebSocketPair()
    this.ctx.acceptWebSocket(server, ['code-viewer', `code-viewer:${id}`])
    server.serializeAttachment({ kind: 'code-viewer', id } satisfies CodeAttachment)
    this.toAgent({ type: 'ws_open', id, path: facts.path ?? '/', headers: forwardedRequestHeaders(request.headers) })
    // The browser offered sub-protocols: the first is accepted here (code-server's own answer cannot be waited for).
    const offered = request.headers.get('sec-websocket-protocol')?.split(',')[0]?.trim()
    return new Response(null, { status: 101, webSocket: client, headers: offered ? { 'sec-websocket-protocol': offered } : {} })
  }

  message(ws: WebSocket, message: string | ArrayBuffer): void {
    const self = ws.deserializeAttachment() as CodeAttachment | null
    if (!self || self.closed) return
    if (self.kind === 'code-viewer') return this.fromViewer(self.id, message)
    if (typeof message !== 'string') return
    let parsed: unknown
    try {
      parsed = JSON.parse(message)
    } catch {
      return
    }
    const frame = v.safeParse(CodeAgentFrame, parsed)
    if (frame.success) this.fromAgent(frame.output)
  }

  /** A code socket closed by its peer (or failed). */
  gone(ws: WebSocket, code: number, reason: string): void {
    const self = ws.deserializeAttachment() as CodeAttachment | null
    if (!self || self.closed) return
    ws.serializeAttachment({ ...self, closed: true })
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, 'bye')
    } catch {
      // already closed
    }
    if (self.kind === 'code-agent') {
      if (!this.live('code-agent').length) this.dropPeers()
      return
    }
    this.toAgent({ type: 'ws_close', id: self.id, code: code === 1005 || code === 1006 ? 1000 : code, reason })
  }

  // ---- frames ---------------------------------------------------------------------

  private fromViewer(id: string, message: string | ArrayBuffer): void {
    const frame = typeof message === 'string' ? 'text' : 'binary'
    const bytes = typeof message === 'string' ? new TextEncoder().encode(message) : new Uint8Array(message)
    if (bytes.byteLength <= CODE_CHUNK_BYTES) return this.toAgent({ type: 'ws_data', id, frame, body: toBase64(bytes) })
    const chunkID = crypto.randomUUID()
    this.toAgent({ type: 'ws_start', id, chunkID, frame })
    for (let at = 0; at < bytes.byteLength; at += CODE_CHUNK_BYTES)
      this.toAgent({ type: 'ws_body', id, chunkID, body: toBase64(bytes.subarray(at, at + CODE_CHUNK_BYTES)) })
    this.toAgent({ type: 'ws_end', id, chunkID })
  }

  private fromAgent(frame: CodeAgentFrame): void {
    switch (frame.type) {
      case 'http':
      case 'http_start':
      case 'http_body':
      case 'http_end':
        return this.answer(frame)
      case 'ws_data':
        return this.toViewer(frame.id, frame.frame, fromBase64(frame.body))
      case 'ws_start':
        this.chunks.set(frame.chunkID, { frame: frame.frame, parts: [], bytes: 0 })
        return
      case 'ws_body': {
        const held = this.chunks.get(frame.chunkID)
        if (!held) return
        const part = fromBase64(frame.body)
        held.bytes += part.byteLength
        if (held.bytes > MAX_CHUNKED_MESSAGE_BYTES) this.chunks.delete(frame.chunkID)
        else held.parts.push(part)
        return
      }
      case 'ws_end': {
        const held = this.chunks.get(frame.chunkID)
        this.chunks.delete(frame.chunkID)
        if (held) this.toViewer(frame.id, held.frame, join(held.parts))
        return
      }
      case 'ws_close': {
        const viewer = this.live(`code-viewer:${frame.id}`)[0]
        if (viewer) this.close(viewer, closeCode(frame.code), frame.reason ?? '')
      }
    }
  }

  private toViewer(id: string, kind: 'text' | 'binary', bytes: Uint8Array): void {
    const viewer = this.live(`code-viewer:${id}`)[0]
    if (!viewer) return
    viewer.send(kind === 'text' ? new TextDecoder().decode(bytes) : bytes.slice().buffer)
  }

  private toAgent(frame: CodeRelayFrame): void {
    this.live('code-agent')[0]?.send(JSON.stringify(frame))
  }

  // ---- HTTP -----------------------------------------------------------------------

  private async proxy(request: Request, facts: RelayFacts): Promise<Response> {
    const declared = Number(request.headers.get('content-length') ?? '0')
    const tooLarge = () =>
      json({ error: 'request_too_large', message: `request bodies are limited to ${CODE_MAX_REQUEST_BYTES} bytes` }, 413)
    if (declared > CODE_MAX_REQUEST_BYTES) {
      await request.body?.cancel().catch(() => undefined)
      return tooLarge()
    }
    const body = await readCapped(request, CODE_MAX_REQUEST_BYTES)
    if (!body) return tooLarge()
    if (!this.live('code-agent').length) return proxyError('the code bridge is not connected')
    const id = crypto.randomUUID()
    const answered = new Promise<Response>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        resolve(proxyError('code bridge timed out', 504))
      }, CODE_RESPONSE_TIMEOUT_MS)
      this.pending.set(id, { resolve, timer })
    })
    this.toAgent({
      type: 'http',
      id,
      method: request.method,
      path: facts.path ?? '/',
      headers: forwardedRequestHeaders(request.headers),
      ...(body.byteLength ? { body: toBase64(body) } : {}),
    })
    return answered
  }

  private answer(frame: Extract<CodeAgentFrame, { type: 'http' | 'http_start' | 'http_body' | 'http_end' }>): void {
    const pending = this.pending.get(frame.id)
    if (!pending) return
    if (frame.type === 'http') {
      this.settle(frame.id)
      if (frame.error !== undefined) {
        pending.resolve(proxyError(frame.error, frame.status >= 400 && frame.status <= 599 ? frame.status : 502))
        return
      }
      const status = frame.status >= 200 && frame.status <= 599 ? frame.status : 502
      const body = NULL_BODY.has(status) || !frame.body ? null : fromBase64(frame.body)
      pending.resolve(new Response(body, { status, headers: responseHeaders(frame.headers) }))
      return
    }
    if (frame.type === 'http_start') {
      clearTimeout(pending.timer)
      const status = frame.status >= 200 && frame.status <= 599 ? frame.status : 502
      const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>()
      pending.stream = writable.getWriter()
      pending.resolve(new Response(NULL_BODY.has(status) ? null : readable, { status, headers: responseHeaders(frame.headers) }))
      return
    }
    if (frame.type === 'http_body') {
      void pending.stream?.write(fromBase64(frame.body)).catch(() => undefined)
      return
    }
    this.settle(frame.id)
    void pending.stream?.close().catch(() => undefined)
  }

  private settle(id: string): void {
    const pending = this.pending.get(id)
    if (pending) clearTimeout(pending.timer)
    this.pending.delete(id)
  }

  /** The agent went (or was replaced): browser sockets close, requests in flight fail. */
  private dropPeers(): void {
    for (const viewer of this.live('code-viewer')) this.close(viewer, CODE_CLOSE.peerGone, CODE_CLOSE_REASON.agentGone)
    for (const [id, pending] of this.pending) {
      this.settle(id)
      if (pending.stream) void pending.stream.abort(new Error(CODE_CLOSE_REASON.agentGone)).catch(() => undefined)
      else pending.resolve(proxyError(CODE_CLOSE_REASON.agentGone))
    }
    this.chunks.clear()
  }

  private close(ws: WebSocket, code: number, reason: string): void {
    const self = ws.deserializeAttachment() as CodeAttachment
    ws.serializeAttachment({ ...self, closed: true })
    try {
      ws.close(code, reason)
    } catch {
      // already closed
    }
  }

  private live(tag: string): WebSocket[] {
    return this.ctx
      .getWebSockets(tag)
      .filter(
        (ws) => ws.readyState !== CLOSING && ws.readyState !== CLOSED && !(ws.deserializeAttachment() as CodeAttachment | null)?.closed,
      )
  }
}

/** A close code a socket may send: 1000, or 3000–4999 and the standard ones that are allowed. */
function closeCode(code: number | undefined): number {
  if (code === undefined) return 1000
  if (code === 1000 || (code >= 1001 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)) return code
  return 1000
}

function join(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.byteLength
  }
  return out
}
