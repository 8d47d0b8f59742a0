import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import type { Duplex } from 'node:stream'
import * as v from 'valibot'
import WebSocket from 'ws'
import { CODE_CHUNK_BYTES, CODE_SERVER_HOST, CODE_SERVER_PORT, CodeRelayFrame, type CodeAgentFrame } from '../../protocol/code.js'

/**
 * One agent socket's work: the broker's relay sends the portal's HTTP requests and browser
 * WebSockets as JSON frames (bodies base64); each is carried to code-server on the runner's
 * loopback over a fresh `direct-tcpip` stream of the lease's pooled SSH connection. Answers go
 * back as `http_start`, `http_body` (CODE_CHUNK_BYTES each)…, `http_end`; WebSocket payloads as
 * `ws_data`, or `ws_start`/`ws_body`…/`ws_end` above CODE_CHUNK_BYTES.
 */

/** Opens a stream to host:port on the runner (SshPool.forwardOut). */
export type OpenStream = (host: string, port: number) => Promise<Duplex>

/** Above this many unsent bytes on the agent socket, a response body is paused. */
const HIGH_WATER = 4 * 1024 * 1024

/** `/portal/leases/<id>/code/x?y` → `/x?y`: code-server serves from its root. */
export function runnerPath(portalPath: string): string {
  const rest = portalPath.replace(/^\/portal\/leases\/[^/?]+\/code(?=[/?]|$)/, '')
  if (rest === '') return '/'
  return rest.startsWith('/') ? rest : `/${rest}`
}

const toBase64 = (bytes: Buffer) => bytes.toString('base64')
const fromBase64 = (text: string) => Buffer.from(text, 'base64')

function flatHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    out[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}

/** Headers for code-server: the browser's allowed ones, with Host and Origin made the runner's own. */
function runnerHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = { ...headers, host: `${CODE_SERVER_HOST}:${CODE_SERVER_PORT}` }
  // code-server refuses a WebSocket whose Origin is not its own host.
  if (out.origin) out.origin = `http://${CODE_SERVER_HOST}:${CODE_SERVER_PORT}`
  delete out['sec-websocket-protocol']
  return out
}

interface Target {
  ws?: WebSocket
  queue: { data: Buffer; binary: boolean }[]
  closed: boolean
}

export class CodeTunnel {
  private readonly sockets = new Map<string, Target>()
  private readonly chunks = new Map<string, { frame: 'text' | 'binary'; parts: Buffer[] }>()
  private readonly requests = new Set<Duplex>()

  constructor(
    private readonly agent: WebSocket,
    private readonly open: OpenStream,
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  /** Handles one frame from the relay. */
  handle(raw: string): void {
    let parsed: unknown
    try {
      parsed = JSON.parse(raw)
    } catch {
      return
    }
    const result = v.safeParse(CodeRelayFrame, parsed)
    if (!result.success) return
    const frame = result.output
    switch (frame.type) {
      case 'http':
        void this.http(frame.id, frame.method, frame.path, frame.headers, frame.body)
        return
      case 'ws_open':
        void this.wsOpen(frame.id, frame.path, frame.headers)
        return
      case 'ws_data':
        return this.toRunner(frame.id, fromBase64(frame.body), frame.frame === 'binary')
      case 'ws_start':
        this.chunks.set(frame.chunkID, { frame: frame.frame, parts: [] })
        return
      case 'ws_body':
        this.chunks.get(frame.chunkID)?.parts.push(fromBase64(frame.body))
        return
      case 'ws_end': {
        const held = this.chunks.get(frame.chunkID)
        this.chunks.delete(frame.chunkID)
        if (held) this.toRunner(frame.id, Buffer.concat(held.parts), held.frame === 'binary')
        return
      }
      case 'ws_close': {
        const target = this.sockets.get(frame.id)
        this.sockets.delete(frame.id)
        if (target) target.closed = true
        target?.ws?.close(closeCode(frame.code), frame.reason ?? '')
      }
    }
  }

  /** The agent socket closed: every stream and socket to the runner goes too. */
  close(): void {
    for (const target of this.sockets.values()) target.ws?.terminate()
    this.sockets.clear()
    for (const stream of this.requests) stream.destroy()
    this.requests.clear()
  }

  get active(): number {
    return this.sockets.size + this.requests.size
  }

  private send(frame: CodeAgentFrame): void {
    if (this.agent.readyState === WebSocket.OPEN) this.agent.send(JSON.stringify(frame))
  }

  // ---- HTTP -----------------------------------------------------------------------

  private async http(id: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<void> {
    let stream: Duplex
    try {
      stream = await this.open(CODE_SERVER_HOST, CODE_SERVER_PORT)
    } catch (error) {
      this.send({
        type: 'http',
        id,
        status: 502,
        error: `code-server on ${CODE_SERVER_HOST}:${CODE_SERVER_PORT}: ${(error as Error).message}`,
      })
      return
    }
    this.requests.add(stream)
    stream.once('close', () => this.requests.delete(stream))
    const request = httpRequest({
      method,
      path: runnerPath(path),
      headers: runnerHeaders(headers),
      createConnection: () => stream as never,
    })
    let answered = false
    request.on('error', (error) => {
      if (!answered) this.send({ type: 'http', id, status: 502, error: `code-server: ${error.message}` })
      else this.send({ type: 'http_end', id })
      answered = true
      stream.destroy()
    })
    request.on('response', (response) => {
      answered = true
      this.send({ type: 'http_start', id, status: response.statusCode ?? 502, headers: flatHeaders(response.headers) })
      let held: Buffer = Buffer.alloc(0)
      const flush = (all: boolean) => {
        while (held.length >= CODE_CHUNK_BYTES || (all && held.length > 0)) {
          const piece = held.subarray(0, CODE_CHUNK_BYTES)
          held = held.subarray(piece.length)
          this.send({ type: 'http_body', id, body: toBase64(piece) })
        }
      }
      response.on('data', (chunk: Buffer) => {
        held = held.length ? Buffer.concat([held, chunk]) : chunk
        flush(false)
        if (this.agent.bufferedAmount > HIGH_WATER) {
          response.pause()
          const resume = setInterval(() => {
            if (this.agent.bufferedAmount > HIGH_WATER / 2 && this.agent.readyState === WebSocket.OPEN) return
            clearInterval(resume)
            response.resume()
          }, 5)
        }
      })
      response.once('end', () => {
        flush(true)
        this.send({ type: 'http_end', id })
        stream.destroy()
      })
      response.once('error', () => {
        flush(true)
        this.send({ type: 'http_end', id })
      })
    })
    request.end(body ? fromBase64(body) : undefined)
  }

  // ---- WebSockets -----------------------------------------------------------------

  private async wsOpen(id: string, path: string, headers: Record<string, string>): Promise<void> {
    const target: Target = { queue: [], closed: false }
    this.sockets.set(id, target)
    let stream: Duplex
    try {
      stream = await this.open(CODE_SERVER_HOST, CODE_SERVER_PORT)
    } catch (error) {
      this.log(`code bridge: a browser socket could not reach code-server: ${(error as Error).message}`)
      this.sockets.delete(id)
      this.send({ type: 'ws_close', id, code: 1011, reason: 'code-server did not answer' })
      return
    }
    if (target.closed) return void stream.destroy()
    const protocols = (headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)
    const ws = new WebSocket(`ws://${CODE_SERVER_HOST}:${CODE_SERVER_PORT}${runnerPath(path)}`, protocols, {
      createConnection: () => stream as never,
      headers: runnerHeaders(headers),
      perMessageDeflate: false,
    })
    target.ws = ws
    ws.on('open', () => {
      for (const item of target.queue) ws.send(item.data, { binary: item.binary })
      target.queue = []
    })
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
      this.toBrowser(id, bytes, isBinary)
    })
    ws.on('error', () => undefined)
    ws.once('close', (code: number, reason: Buffer) => {
      if (this.sockets.get(id) !== target) return
      this.sockets.delete(id)
      this.send({ type: 'ws_close', id, code: closeCode(code), reason: reason.toString('utf8') })
    })
  }

  private toRunner(id: string, data: Buffer, binary: boolean): void {
    const target = this.sockets.get(id)
    if (!target) return
    if (target.ws?.readyState === WebSocket.OPEN) target.ws.send(data, { binary })
    else target.queue.push({ data, binary })
  }

  private toBrowser(id: string, bytes: Buffer, binary: boolean): void {
    const frame = binary ? 'binary' : 'text'
    if (bytes.length <= CODE_CHUNK_BYTES) return this.send({ type: 'ws_data', id, frame, body: toBase64(bytes) })
    const chunkID = `${id}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
    this.send({ type: 'ws_start', id, chunkID, frame })
    for (let at = 0; at < bytes.length; at += CODE_CHUNK_BYTES)
      this.send({ type: 'ws_body', id, chunkID, body: toBase64(bytes.subarray(at, at + CODE_CHUNK_BYTES)) })
    this.send({ type: 'ws_end', id, chunkID })
  }
}

/** A close code a socket may send. */
function closeCode(code: number | undefined): number {
  if (code === undefined) return 1000
  if (code === 1000 || (code >= 1001 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)) return code
  return 1000
}
