import WebSocket from 'ws'
import { accessHeaders, type AccessCredentials } from './client.js'

/**
 * The WebVNC agent socket: `GET /v1/leases/{id}/webvnc/agent` upgraded to a WebSocket,
 * with the one-use ticket as the bearer (the broker checks it; the user token is not sent
 * on this socket) and the Cloudflare Access headers. `queryTicket` sends the ticket as
 * `?ticket=` instead, for brokers that read it only there.
 */
export interface AgentDial {
  brokerUrl: string
  leaseId: string
  ticket: string
  access?: AccessCredentials
  queryTicket?: boolean
  /** Handshake budget (default 10 s). */
  timeoutMs?: number
  /** Which bridge's agent socket: WebVNC (the default) or the code bridge (`crabbox code`). */
  bridge?: 'webvnc' | 'code'
}

/** Why a dial failed: the HTTP status the broker answered (0 when it was not reached) and its body. */
export class AgentDialError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body = '',
  ) {
    super(message)
    this.name = 'AgentDialError'
  }
}

export function agentSocketUrl(brokerUrl: string, leaseId: string, ticket?: string, bridge: 'webvnc' | 'code' = 'webvnc'): string {
  const url = new URL(`${brokerUrl.replace(/\/+$/, '')}/v1/leases/${encodeURIComponent(leaseId)}/${bridge}/agent`)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  if (ticket) url.searchParams.set('ticket', ticket)
  return url.toString()
}

/**
 * Opens one agent socket; resolves once it is open, rejects with an AgentDialError. It resolves
 * **paused**: a frame the broker wrote right behind the 101 would otherwise be emitted before the
 * caller's handlers are on (the resolution runs after it) and lost. Attach them, then `resume()`.
 */
export function dialAgent(dial: AgentDial): Promise<WebSocket> {
  const headers: Record<string, string> = { ...accessHeaders(dial.access) }
  if (!dial.queryTicket) headers.authorization = `Bearer ${dial.ticket}`
  const url = agentSocketUrl(dial.brokerUrl, dial.leaseId, dial.queryTicket ? dial.ticket : undefined, dial.bridge)
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers, handshakeTimeout: dial.timeoutMs ?? 10_000, perMessageDeflate: false })
    socket.binaryType = 'nodebuffer'
    let settled = false
    const fail = (error: AgentDialError) => {
      if (settled) return
      settled = true
      socket.terminate()
      reject(error)
    }
    socket.once('unexpected-response', (_request, response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (body = (body + chunk).slice(0, 600)))
      response.on('end', () =>
        fail(new AgentDialError(`the broker answered ${response.statusCode}`, response.statusCode ?? 0, body.trim())),
      )
      response.on('error', () =>
        fail(new AgentDialError(`the broker answered ${response.statusCode}`, response.statusCode ?? 0, body.trim())),
      )
    })
    socket.once('error', (error) => fail(new AgentDialError(error.message, 0)))
    socket.once('open', () => {
      settled = true
      socket.pause()
      socket.removeAllListeners('error')
      resolve(socket)
    })
  })
}
