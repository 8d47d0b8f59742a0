import type { DirectProvider, Lease, ProviderContext } from '../../providers/types.js'
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

/**
 * Calls `beat` now and every idle/3 (5–60 s); a beat still in flight is not
 * doubled and failures go to `notice`, never to the caller.
 */
export function startPeriodicBeat(idleTimeoutSeconds: number | undefined, beat: () => Promise<void>, notice: (error: unknown) => void): Heartbeater {
  let stopped = false
  let inFlight = false
  const tick = async () => {
    if (stopped || inFlight) return
    inFlight = true
    try {
      await beat()
    } catch (error) {
      if (!stopped) notice(error)
    } finally {
      inFlight = false
    }
  }
  void tick()
  const timer = setInterval(() => void tick(), heartbeatIntervalMs(idleTimeoutSeconds))
  timer.unref()
  return {
    stop() {
      stopped = true
      clearInterval(timer)
    },
  }
}

/**
 * Direct-mode cloud leases have no broker to keep them alive: the provider's
 * `touch` moves the machine's expiry labels forward, so `crabbox cleanup` never
 * deletes a box while a command runs on it. Providers without `touch` need nothing.
 */
export function startDirectTouch(provider: DirectProvider, lease: Lease, context: ProviderContext): Heartbeater {
  const touch = provider.touch
  if (!touch) return noHeartbeat
  let said = false
  return startPeriodicBeat(lease.idleTimeoutSeconds, () => touch.call(provider, lease, context), (error) => {
    if (said) return
    said = true
    context.progress.warn(`could not refresh the expiry labels of ${lease.id} (will keep trying): ${(error as Error).message}`)
  })
}
