import * as v from 'valibot'

/**
 * Mediated egress on the wire: the one-use tickets of the two bridge sockets (`host` on the
 * operator's machine, `client` on the lease), the status, and the JSON frames the CLI's two
 * halves exchange through the broker (which forwards them without reading them).
 */

/** An egress ticket: `egress_` + 32 lowercase hex, one use, valid EGRESS_TICKET_TTL_SECONDS. */
export const EGRESS_TICKET_PATTERN = /^egress_[a-f0-9]{32}$/
export const EGRESS_TICKET_TTL_SECONDS = 120
export const EGRESS_ROLES = ['host', 'client'] as const
export type EgressRole = (typeof EGRESS_ROLES)[number]
/** Allow-list bounds: entries of at most 253 characters, at most 100 entries; a profile name of at most 80. */
export const MAX_ALLOW_ENTRIES = 100
export const MAX_ALLOW_LENGTH = 253
export const MAX_PROFILE_LENGTH = 80
export const MAX_SESSION_LENGTH = 128

/** The ticket request: every field optional (the body itself too: no JSON body counts as `{}`). */
export const EgressTicketRequest = v.object({
  role: v.optional(v.unknown()),
  sessionID: v.optional(v.unknown()),
  sessionId: v.optional(v.unknown()),
  profile: v.optional(v.unknown()),
  allow: v.optional(v.unknown()),
})

export const EgressTicketResponse = v.object({
  ticket: v.pipe(v.string(), v.regex(EGRESS_TICKET_PATTERN)),
  leaseID: v.string(),
  role: v.picklist(EGRESS_ROLES),
  sessionID: v.string(),
  expiresAt: v.string(),
})
export type EgressTicketResponse = v.InferOutput<typeof EgressTicketResponse>

/** The lease's current (newest) session and which of its sides are connected; `""`/`[]`/false without one. */
export const EgressStatus = v.object({
  leaseID: v.string(),
  slug: v.string(),
  sessionID: v.string(),
  profile: v.string(),
  allow: v.array(v.string()),
  hostConnected: v.boolean(),
  clientConnected: v.boolean(),
  createdAt: v.string(),
  updatedAt: v.string(),
})
export type EgressStatus = v.InferOutput<typeof EgressStatus>

export const EgressSocketQuery = v.object({ ticket: v.optional(v.pipe(v.string(), v.maxLength(128))) })

/** Close codes on the bridge sockets: 1011 (the peer side went away), 1012 (replaced), 1000 (lease released). */
export const EGRESS_CLOSE = { peerGone: 1011, replaced: 1012, released: 1000 } as const
export const EgressCloseReason = {
  hostGone: 'egress host disconnected',
  clientGone: 'egress client disconnected',
  replacedSession: 'replaced by a newer egress session',
  replacedSocket: 'replaced by a newer egress socket',
  released: 'lease released',
} as const

/** Frames between the client (lease) and host (operator) halves; `body` is base64. */
export type EgressFrame =
  | { type: 'open'; id: string; host: string; port: number }
  | { type: 'open_ok'; id: string }
  | { type: 'data'; id: string; body: string }
  | { type: 'close'; id: string }
  | { type: 'error'; id: string; error: string }
