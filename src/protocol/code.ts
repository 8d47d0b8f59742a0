import * as v from 'valibot'

/**
 * The code bridge on the wire: one-use bridge tickets, the portal's health JSON, and the
 * JSON text frames between the broker's relay and the CLI bridge's agent socket. The relay
 * tunnels the portal's HTTP requests and browser WebSockets under `/portal/leases/{id}/code/`
 * through that socket to code-server on the runner's loopback.
 */

/** A bridge ticket: `code_` + 32 lowercase hex, one use, valid CODE_TICKET_TTL_SECONDS. */
export const CODE_TICKET_PATTERN = /^code_[a-f0-9]{32}$/
export const CODE_TICKET_TTL_SECONDS = 120
/** code-server on the runner, loopback only. */
export const CODE_SERVER_HOST = '127.0.0.1'
export const CODE_SERVER_PORT = 8080
/** Largest request body the relay forwards; more is 413 `request_too_large`. */
export const CODE_MAX_REQUEST_BYTES = 10 * 1024 * 1024
/** The relay waits this long for an answer to a proxied request (then 504). */
export const CODE_RESPONSE_TIMEOUT_MS = 30_000
/**
 * Payload bytes per chunk frame. A multiple of 3, so the base64 pieces of one body can be
 * joined as strings; WebSocket payloads above it are sent as ws_start/ws_body/ws_end.
 */
export const CODE_CHUNK_BYTES = 15 * 1024
/** Close codes: 1012 (a newer bridge replaced this one), 1011 (the other side went away). */
export const CODE_CLOSE = { replaced: 1012, peerGone: 1011 } as const
export const CODE_CLOSE_REASON = {
  replaced: 'replaced by a newer code bridge',
  agentGone: 'code bridge disconnected',
} as const

/** Request headers the relay passes on (plus any `x-*`, and `cookie` cut to `vscode-tkn=` entries). */
export const CODE_FORWARDED_HEADERS = [
  'accept',
  'accept-language',
  'cache-control',
  'content-type',
  'origin',
  'pragma',
  'sec-websocket-protocol',
  'user-agent',
] as const
/** Response headers the relay drops (it sets its own CSP). */
export const CODE_DROPPED_RESPONSE_HEADERS = [
  'connection',
  'content-security-policy',
  'content-encoding',
  'content-length',
  'transfer-encoding',
  'upgrade',
] as const

export const CodeTicketResponse = v.object({
  ticket: v.pipe(v.string(), v.regex(CODE_TICKET_PATTERN)),
  leaseID: v.string(),
  expiresAt: v.string(),
})
export type CodeTicketResponse = v.InferOutput<typeof CodeTicketResponse>

export const CodeHealth = v.object({
  lease: v.object({ id: v.string(), slug: v.string(), state: v.string(), code: v.boolean() }),
  code: v.object({ agentConnected: v.boolean(), pendingRequests: v.number() }),
})
export type CodeHealth = v.InferOutput<typeof CodeHealth>

export const CodeAgentQuery = v.object({ ticket: v.optional(v.pipe(v.string(), v.maxLength(128))) })

const HeaderMap = v.record(v.string(), v.string())
const Id = v.pipe(v.string(), v.maxLength(128))
const Body = v.string()
const FrameKind = v.picklist(['text', 'binary'])

/** Relay → agent. */
export const CodeRelayFrame = v.variant('type', [
  v.object({ type: v.literal('http'), id: Id, method: v.string(), path: v.string(), headers: HeaderMap, body: v.optional(Body) }),
  v.object({ type: v.literal('ws_open'), id: Id, path: v.string(), headers: HeaderMap }),
  v.object({ type: v.literal('ws_data'), id: Id, frame: FrameKind, body: Body }),
  v.object({ type: v.literal('ws_start'), id: Id, chunkID: Id, frame: FrameKind }),
  v.object({ type: v.literal('ws_body'), id: Id, chunkID: Id, body: Body }),
  v.object({ type: v.literal('ws_end'), id: Id, chunkID: Id }),
  v.object({ type: v.literal('ws_close'), id: Id, code: v.optional(v.number()), reason: v.optional(v.string()) }),
])
export type CodeRelayFrame = v.InferOutput<typeof CodeRelayFrame>

/** Agent → relay. */
export const CodeAgentFrame = v.variant('type', [
  v.object({
    type: v.literal('http'),
    id: Id,
    status: v.number(),
    headers: v.optional(HeaderMap),
    body: v.optional(Body),
    error: v.optional(v.string()),
  }),
  v.object({ type: v.literal('http_start'), id: Id, status: v.number(), headers: HeaderMap }),
  v.object({ type: v.literal('http_body'), id: Id, body: Body }),
  v.object({ type: v.literal('http_end'), id: Id }),
  v.object({ type: v.literal('ws_data'), id: Id, frame: FrameKind, body: Body }),
  v.object({ type: v.literal('ws_start'), id: Id, chunkID: Id, frame: FrameKind }),
  v.object({ type: v.literal('ws_body'), id: Id, chunkID: Id, body: Body }),
  v.object({ type: v.literal('ws_end'), id: Id, chunkID: Id }),
  v.object({ type: v.literal('ws_close'), id: Id, code: v.optional(v.number()), reason: v.optional(v.string()) }),
])
export type CodeAgentFrame = v.InferOutput<typeof CodeAgentFrame>

/**
 * The request headers the relay passes on to code-server, from a browser request's headers.
 * The broker's own `x-crabbox-*` headers (identity, hand-off) never leave it.
 */
export function forwardedRequestHeaders(headers: {
  forEach(fn: (value: string, name: string) => void): void
  get(name: string): string | null
}): Record<string, string> {
  const out: Record<string, string> = {}
  headers.forEach((value, name) => {
    const key = name.toLowerCase()
    if (key.startsWith('x-crabbox-')) return
    if ((CODE_FORWARDED_HEADERS as readonly string[]).includes(key) || key.startsWith('x-')) out[key] = value
  })
  const cookie = headers.get('cookie')
  if (cookie) {
    const kept = cookie
      .split(';')
      .map((part) => part.trim())
      .filter((part) => part.startsWith('vscode-tkn='))
    if (kept.length) out.cookie = kept.join('; ')
  }
  return out
}
