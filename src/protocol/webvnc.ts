import * as v from 'valibot'

/**
 * The broker's WebVNC wire shapes: the one-use bridge ticket, the status and the reset
 * reply. The CLI bridge sends each ticket on its agent socket (`Authorization: Bearer`).
 */

/** `wvnc_` and 32 lowercase hex digits; valid 120 s, one use. */
export const WEBVNC_TICKET = /^wvnc_[a-f0-9]{32}$/

export const WebVncTicketResponse = v.object({
  ticket: v.pipe(v.string(), v.regex(WEBVNC_TICKET, 'a wvnc_ ticket')),
  leaseID: v.string(),
  expiresAt: v.string(),
})
export type WebVncTicketResponse = v.InferOutput<typeof WebVncTicketResponse>

export const WebVncEvent = v.looseObject({ at: v.string(), event: v.string(), reason: v.optional(v.string()) })
export type WebVncEvent = v.InferOutput<typeof WebVncEvent>

export const WebVncStatus = v.looseObject({
  leaseID: v.string(),
  slug: v.string(),
  bridgeConnected: v.boolean(),
  viewerConnected: v.boolean(),
  viewerCount: v.optional(v.number()),
  observerCount: v.optional(v.number()),
  availableViewerSlots: v.optional(v.number()),
  viewerID: v.optional(v.string()),
  viewerRole: v.optional(v.string()),
  controllerID: v.optional(v.string()),
  controllerLabel: v.optional(v.string()),
  command: v.string(),
  events: v.array(WebVncEvent),
  message: v.string(),
})
export type WebVncStatus = v.InferOutput<typeof WebVncStatus>

export const WebVncResetResponse = v.looseObject({
  leaseID: v.string(),
  slug: v.string(),
  bridgeWasConnected: v.boolean(),
  viewerWasConnected: v.boolean(),
  command: v.string(),
  events: v.array(WebVncEvent),
})
export type WebVncResetResponse = v.InferOutput<typeof WebVncResetResponse>

/** Close codes on the agent socket: 1011 (its viewer or the bridge went away), 1012 (reset requested). */
export const WEBVNC_CLOSE = { peerGone: 1011, reset: 1012 } as const
