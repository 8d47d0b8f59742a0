import type { Config } from '../config/schema.js'
import { CrabboxError, usageError } from '../errors.js'
import { LeaseResponse, type LeaseTelemetry } from '../protocol/leases.js'
import type { DirectProvider, Lease, ProviderContext } from '../providers/types.js'
import { BrokerError, brokerClient, type BrokerClient } from '../transport/broker/client.js'
import type { ControlChannel } from '../transport/broker/control.js'
import type { Progress } from '../ui/progress.js'

/**
 * Keeping leases alive: broker leases get heartbeats (control socket, else HTTP),
 * direct-mode cloud leases get their expiry labels moved forward. Both run on the
 * one periodic loop below.
 */

export interface Heartbeater {
  stop(): void
}

export const noHeartbeat: Heartbeater = { stop() {} }

/** Every idle/3, clamped to 5–60 s. */
export const heartbeatIntervalMs = (idleTimeoutSeconds = 1800) =>
  Math.min(60_000, Math.max(5_000, Math.round((idleTimeoutSeconds * 1000) / 3)))

/** How long one heartbeat may take, socket attempt and HTTP fallback together; separate from the cadence. */
const HEARTBEAT_BUDGET_MS = 20_000

export interface BeatBody {
  idleTimeoutSeconds?: number
  telemetry?: LeaseTelemetry
}

export interface BeatResult {
  leaseID: string
  expiresAt?: string
  idleTimeoutSeconds?: number
  via: 'socket' | 'http'
}

/**
 * One heartbeat: over the control socket when it is open (waiting up to `openWaitMs`
 * for it), else — or when the socket attempt fails — `POST /v1/leases/{id}/heartbeat`.
 */
async function beatOnce(
  client: BrokerClient,
  channel: ControlChannel | undefined,
  leaseID: string,
  body: BeatBody,
  options: { budgetMs?: number; openWaitMs?: number; signal?: AbortSignal } = {},
): Promise<BeatResult> {
  const deadline = Date.now() + (options.budgetMs ?? HEARTBEAT_BUDGET_MS)
  if (channel && (await channel.whenOpen(options.openWaitMs ?? 0))) {
    try {
      // Half the budget for the socket, so a stalled socket still leaves time for HTTP.
      const reply = await channel.heartbeat(leaseID, body, Math.max(1000, (deadline - Date.now()) / 2))
      return { leaseID: reply.leaseID, expiresAt: reply.expiresAt, via: 'socket' }
    } catch {
      // fall through to HTTP for this beat
    }
  }
  const { lease } = await client.request('POST', `/v1/leases/${encodeURIComponent(leaseID)}/heartbeat`, {
    body,
    schema: LeaseResponse,
    timeoutMs: Math.max(1000, deadline - Date.now()),
    signal: options.signal,
  })
  return { leaseID: lease.id, expiresAt: lease.expiresAt, idleTimeoutSeconds: lease.idleTimeoutSeconds, via: 'http' }
}

/**
 * Calls `beat` now and every idle/3 (5–60 s); a beat still in flight is not
 * doubled and failures go to `notice`, never to the caller.
 */
function startPeriodicBeat(
  idleTimeoutSeconds: number | undefined,
  beat: () => Promise<void>,
  notice: (error: unknown) => void,
): Heartbeater {
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
 * Keeps a broker lease alive: a beat now and every idle timeout ÷ 3 (5–60 s), over the
 * process's control channel when it is open and over HTTP otherwise. A beat still in
 * flight is not doubled; failures go to `notice` (said once), never fail the caller.
 * The control channel (ws, partysocket) is loaded only here, when a broker lease needs beats.
 */
export function startHeartbeat(
  client: BrokerClient,
  lease: Pick<Lease, 'id' | 'idleTimeoutSeconds'>,
  notice: (error: unknown) => void,
  telemetry: () => LeaseTelemetry | undefined = () => undefined,
): Heartbeater {
  const control = import('../transport/broker/control.js').then(({ openControlChannel, CONTROL_OPEN_BUDGET_MS }) => ({
    channel: openControlChannel(client),
    openBudgetMs: CONTROL_OPEN_BUDGET_MS,
  }))
  const controller = new AbortController()
  let first = true
  const loop = startPeriodicBeat(
    lease.idleTimeoutSeconds,
    async () => {
      const { channel, openBudgetMs } = await control
      // The first beat gives a fresh socket its dial budget; later ones use it only if open.
      const openWaitMs = first ? openBudgetMs : 0
      first = false
      const latest = telemetry()
      await beatOnce(client, channel, lease.id, latest ? { telemetry: latest } : {}, { openWaitMs, signal: controller.signal })
    },
    notice,
  )
  let stopped = false
  return {
    stop() {
      if (stopped) return
      stopped = true
      loop.stop()
      controller.abort()
      void control.then(
        ({ channel }) => channel.release(),
        () => undefined,
      )
    },
  }
}

/**
 * `crabbox heartbeat`: marks a broker lease active now (for work done over plain ssh),
 * optionally with a new idle timeout. One HTTP request: a socket would cost a round trip more.
 */
export async function heartbeatCommand(context: { config: Config }, idOrSlug: string, idleTimeoutMs?: number): Promise<BeatResult> {
  const client = brokerClient(context.config)
  if (!client) {
    throw new CrabboxError('heartbeats keep broker leases alive, and no broker is configured', {
      exit: 'usage',
      hint: 'Direct-mode leases live until `crabbox stop`; set a broker with `crabbox config set-broker --url URL` (or CRABBOX_COORDINATOR).',
    })
  }
  let body: BeatBody = {}
  if (idleTimeoutMs !== undefined) {
    if (idleTimeoutMs < 1000) throw usageError('--idle-timeout must be at least 1s')
    body = { idleTimeoutSeconds: Math.round(idleTimeoutMs / 1000) }
  }
  try {
    return await beatOnce(client, undefined, idOrSlug, body)
  } catch (error) {
    if (error instanceof BrokerError && error.status === 404) {
      throw new CrabboxError(`no lease ${idOrSlug}`, {
        exit: 'notFound',
        code: 'not_found',
        hint: '`crabbox list` shows your active leases.',
      })
    }
    if (error instanceof BrokerError && error.errorCode === 'lease_not_active') {
      throw new CrabboxError(error.message, {
        exit: 'notFound',
        code: 'lease_not_active',
        hint: 'A released or expired lease stays gone; start a new one with `crabbox warmup`.',
      })
    }
    throw error
  }
}

/** Heartbeats for a broker lease (said once on stderr when they fail); nothing in direct mode. */
export function leaseHeartbeat(
  broker: BrokerClient | undefined,
  lease: Pick<Lease, 'id' | 'idleTimeoutSeconds'>,
  progress: Progress,
): Heartbeater {
  if (!broker) return noHeartbeat
  let said = false
  return startHeartbeat(broker, lease, (error) => {
    if (said) return
    said = true
    progress.warn(`lease heartbeat failed (will keep trying): ${(error as Error).message}`)
  })
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
  return startPeriodicBeat(
    lease.idleTimeoutSeconds,
    () => touch.call(provider, lease, context),
    (error) => {
      if (said) return
      said = true
      context.progress.warn(`could not refresh the expiry labels of ${lease.id} (will keep trying): ${(error as Error).message}`)
    },
  )
}
