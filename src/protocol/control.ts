import * as v from 'valibot'
import { RUN_LIMITS, RunEventRecord } from './runs.js'

/**
 * Control WebSocket `/v1/control` frames (docs/broker.md): JSON text, one message per
 * frame, discriminated by `type`. Shared by the broker (validates what clients send) and
 * the CLI (validates what the broker pushes).
 */

export const CONTROL_PROTOCOL = 1

const Seq = v.pipe(v.number(), v.finite(), v.minValue(0), v.transform(Math.trunc))

export const SubscribeRunMessage = v.object({
  type: v.literal('subscribe_run'),
  runID: v.pipe(v.string(), v.minLength(1), v.maxLength(64)),
  after: v.optional(Seq, 0),
  limit: v.pipe(
    v.optional(Seq, 100),
    v.transform((limit) => Math.min(Math.max(limit, 1), RUN_LIMITS.eventsPageMax)),
  ),
})

export const AckMessage = v.object({
  type: v.literal('ack'),
  runID: v.pipe(v.string(), v.minLength(1), v.maxLength(64)),
  seq: Seq,
})

export const HeartbeatMessage = v.object({
  type: v.literal('heartbeat'),
  leaseID: v.pipe(v.string(), v.minLength(1), v.maxLength(128)),
  idleTimeoutSeconds: v.optional(v.pipe(v.number(), v.finite())),
  telemetry: v.optional(v.looseObject({})),
})

export const PingMessage = v.object({ type: v.literal('ping') })

export const ControlClientMessage = v.variant('type', [SubscribeRunMessage, AckMessage, HeartbeatMessage, PingMessage])
export type ControlClientMessage = v.InferOutput<typeof ControlClientMessage>
export type ControlClientInput = v.InferInput<typeof ControlClientMessage>

export const CONTROL_CLIENT_TYPES = ['subscribe_run', 'ack', 'heartbeat', 'ping'] as const

export const HelloFrame = v.object({ type: v.literal('hello'), protocol: v.number(), clientID: v.string() })
export const RunEventsFrame = v.object({
  type: v.literal('run_events'),
  runID: v.string(),
  events: v.array(RunEventRecord),
  nextSeq: v.number(),
})
export const HeartbeatFrame = v.object({
  type: v.literal('heartbeat'),
  leaseID: v.string(),
  ok: v.boolean(),
  expiresAt: v.optional(v.string()),
  error: v.optional(v.string()),
})
export const PongFrame = v.object({ type: v.literal('pong') })
export const ErrorFrame = v.object({ type: v.literal('error'), code: v.string(), message: v.string() })

export const ControlServerMessage = v.variant('type', [HelloFrame, RunEventsFrame, HeartbeatFrame, PongFrame, ErrorFrame])
export type ControlServerMessage = v.InferOutput<typeof ControlServerMessage>
