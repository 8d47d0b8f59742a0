import type WebSocket from 'ws'
import { accessHeaders, type AccessCredentials } from './client.js'
import { dialBrokerSocket } from './socket-dial.js'

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

/** Why an agent socket dial failed: the HTTP status the broker answered (0 when it was not reached) and its body. */
export { BrokerSocketDialError as AgentDialError } from './socket-dial.js'

export function agentSocketUrl(brokerUrl: string, leaseId: string, ticket?: string, bridge: 'webvnc' | 'code' = 'webvnc'): string {
  const url = new URL(`${brokerUrl.replace(/\/+$/, '')}/v1/leases/${encodeURIComponent(leaseId)}/${bridge}/agent`)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  if (ticket) url.searchParams.set('ticket', ticket)
  return url.toString()
}

/** Opens one agent socket, paused (see dialBrokerSocket); rejects with an AgentDialError. */
export function dialAgent(dial: AgentDial): Promise<WebSocket> {
  const headers: Record<string, string> = { ...accessHeaders(dial.access) }
  if (!dial.queryTicket) headers.authorization = `Bearer ${dial.ticket}`
  const url = agentSocketUrl(dial.brokerUrl, dial.leaseId, dial.queryTicket ? dial.ticket : undefined, dial.bridge)
  return dialBrokerSocket(url, headers, dial.timeoutMs)
}
