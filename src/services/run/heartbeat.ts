import type { Lease } from '../../providers/types.js'
import type { BrokerClient } from '../../transport/broker/client.js'
import type { BrokerNotice } from './recorder.js'

/**
 * Keeps a lease alive while a command runs. HTTP today; the control channel
 * will provide a WebSocket implementation of the same seam.
 */
export interface Heartbeater {
  stop(): void
}

export const noHeartbeat: Heartbeater = { stop() {} }

/** Every idle/3, clamped to 5–60 s, as the reference CLI does. */
export const heartbeatIntervalMs = (idleTimeoutSeconds = 1800) => Math.min(60_000, Math.max(5_000, Math.round((idleTimeoutSeconds * 1000) / 3)))

/** Beats `POST /v1/leases/{id}/heartbeat` now and on an interval; failures are one warning, never fatal. */
export function startHttpHeartbeat(client: BrokerClient, lease: Lease, notice: BrokerNotice): Heartbeater {
  let stopped = false
  const controller = new AbortController()
  const beat = () => {
    if (stopped) return
    client.request('POST', `/v1/leases/${encodeURIComponent(lease.id)}/heartbeat`, { body: {}, timeoutMs: 20_000, signal: controller.signal }).catch((error: Error) => {
      if (!stopped) notice(error)
    })
  }
  beat()
  const timer = setInterval(beat, heartbeatIntervalMs(lease.idleTimeoutSeconds))
  timer.unref()
  return {
    stop() {
      stopped = true
      clearInterval(timer)
      controller.abort()
    },
  }
}
