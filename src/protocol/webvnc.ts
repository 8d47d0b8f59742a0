import * as v from 'valibot'

/**
 * WebVNC on the wire: one-use bridge tickets, the status a CLI bridge and the portal
 * poll, reset, and the portal's take-control request. The relay itself carries raw RFB
 * bytes and has no message schema of its own.
 */

/** A bridge ticket: `wvnc_` + 32 lowercase hex, one use, valid WEBVNC_TICKET_TTL_SECONDS. */
export const WEBVNC_TICKET_PATTERN = /^wvnc_[a-f0-9]{32}$/
export const WEBVNC_TICKET_TTL_SECONDS = 120
/** Agent and viewer IDs; the broker mints the prefix + 16 hex, a browser may bring its own viewer ID. */
export const BRIDGE_PEER_ID_PATTERN = /^(agent|viewer)_[A-Za-z0-9_.:-]{6,80}$/
export const VIEWER_ID_PATTERN = /^viewer_[A-Za-z0-9_.:-]{6,80}$/

export const WEBVNC_EVENTS = [
  'bridge_connected',
  'bridge_disconnected',
  'viewer_connected',
  'viewer_disconnected',
  'control_taken',
  'reset',
  'bridge_reset',
] as const
export type WebVncEventName = (typeof WEBVNC_EVENTS)[number]

export const WebVncEvent = v.object({
  at: v.string(),
  event: v.picklist(WEBVNC_EVENTS),
  reason: v.optional(v.string()),
})
export type WebVncEvent = v.InferOutput<typeof WebVncEvent>

export const WebVncTicketResponse = v.object({
  ticket: v.pipe(v.string(), v.regex(WEBVNC_TICKET_PATTERN)),
  leaseID: v.string(),
  expiresAt: v.string(),
})

export const WebVncStatus = v.object({
  leaseID: v.string(),
  slug: v.string(),
  /** At least one agent socket is open. */
  bridgeConnected: v.boolean(),
  viewerConnected: v.boolean(),
  viewerCount: v.number(),
  /** Viewers other than the controller. */
  observerCount: v.number(),
  /** Open agents no viewer holds yet. */
  availableViewerSlots: v.number(),
  viewerID: v.string(),
  viewerRole: v.picklist(['controller', 'observer', 'none']),
  controllerID: v.string(),
  controllerLabel: v.string(),
  /** The command that starts the bridge for this lease. */
  command: v.string(),
  /** The last events, oldest first. */
  events: v.array(WebVncEvent),
  message: v.string(),
})
export type WebVncStatus = v.InferOutput<typeof WebVncStatus>

export const WebVncStatusQuery = v.object({ viewer: v.optional(v.pipe(v.string(), v.maxLength(128))) })

export const WebVncResetResponse = v.object({
  leaseID: v.string(),
  slug: v.string(),
  bridgeWasConnected: v.boolean(),
  viewerWasConnected: v.boolean(),
  command: v.string(),
  events: v.array(WebVncEvent),
})

/** Take control (portal): the viewer that asks. Checked by the route (400 `invalid_viewer`). */
export const WebVncControlRequest = v.object({ viewerID: v.optional(v.unknown()) })

export const WebVncViewerQuery = v.object({ viewer: v.optional(v.pipe(v.string(), v.maxLength(128))) })
export const WebVncAgentQuery = v.object({ ticket: v.optional(v.pipe(v.string(), v.maxLength(128))) })

/** The ticket pattern under the name the CLI bridge uses. */
export const WEBVNC_TICKET = WEBVNC_TICKET_PATTERN
export type WebVncTicketResponse = v.InferOutput<typeof WebVncTicketResponse>
export type WebVncResetResponse = v.InferOutput<typeof WebVncResetResponse>

/** Close codes on the agent socket: 1011 (its viewer or the bridge went away), 1012 (reset requested). */
export const WEBVNC_CLOSE = { peerGone: 1011, reset: 1012 } as const
