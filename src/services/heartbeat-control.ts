import type { Config } from '../config/schema.js'
import { parseDuration } from '../config/schema.js'
import { CrabboxError, usageError } from '../errors.js'
import { LeaseResponse } from '../protocol/leases.js'
import type { Lease } from '../providers/types.js'
import { BrokerError, brokerClient, type BrokerClient } from '../transport/broker/client.js'
import { CONTROL_OPEN_BUDGET_MS, openControlChannel, type ControlChannel } from '../transport/broker/control.js'
import type { Progress } from '../ui/progress.js'
import { heartbeatIntervalMs, noHeartbeat, type Heartbeater } from './run/heartbeat.js'

/** How long one heartbeat may take, socket attempt and HTTP fallback together; separate from the cadence. */
export const HEARTBEAT_BUDGET_MS = 20_000

export interface BeatBody {
  idleTimeoutSeconds?: number
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
export async function beatOnce(
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
 * Keeps a broker lease alive: a beat now and every idle timeout ÷ 3 (5–60 s), over the
 * process's control channel when it is open and over HTTP otherwise. A beat still in
 * flight is not doubled; failures go to `notice` (said once), never fail the caller.
 */
export function startHeartbeat(client: BrokerClient, lease: Pick<Lease, 'id' | 'idleTimeoutSeconds'>, notice: (error: unknown) => void): Heartbeater {
  const channel = openControlChannel(client)
  const controller = new AbortController()
  let stopped = false
  let inFlight = false
  let first = true
  const beat = async () => {
    if (stopped || inFlight) return
    inFlight = true
    try {
      // The first beat gives a fresh socket its dial budget; later ones use it only if open.
      await beatOnce(client, channel, lease.id, {}, { openWaitMs: first ? CONTROL_OPEN_BUDGET_MS : 0, signal: controller.signal })
    } catch (error) {
      if (!stopped) notice(error)
    } finally {
      first = false
      inFlight = false
    }
  }
  void beat()
  const timer = setInterval(() => void beat(), heartbeatIntervalMs(lease.idleTimeoutSeconds))
  timer.unref()
  return {
    stop() {
      if (stopped) return
      stopped = true
      clearInterval(timer)
      controller.abort()
      channel.release()
    },
  }
}

/**
 * `crabbox heartbeat`: marks a broker lease active now (for work done over plain ssh),
 * optionally with a new idle timeout. One HTTP request: a socket would cost a round trip more.
 */
export async function heartbeatCommand(context: { config: Config }, idOrSlug: string, idleTimeout?: string): Promise<BeatResult> {
  const client = brokerClient(context.config)
  if (!client) {
    throw new CrabboxError('heartbeats keep broker leases alive, and no broker is configured', {
      exit: 'usage',
      hint: 'Direct-mode leases live until `crabbox stop`; set a broker with `crabbox config set-broker --url URL` (or CRABBOX_COORDINATOR).',
    })
  }
  let body: BeatBody = {}
  if (idleTimeout !== undefined) {
    let ms: number
    try {
      ms = parseDuration(idleTimeout)
    } catch (error) {
      throw usageError(`invalid --idle-timeout: ${(error as Error).message}`)
    }
    if (ms < 1000) throw usageError('--idle-timeout must be at least 1s')
    body = { idleTimeoutSeconds: Math.round(ms / 1000) }
  }
  try {
    return await beatOnce(client, undefined, idOrSlug, body)
  } catch (error) {
    if (error instanceof BrokerError && error.status === 404) {
      throw new CrabboxError(`no lease ${idOrSlug}`, { exit: 'notFound', code: 'not_found', hint: '`crabbox list` shows your active leases.' })
    }
    if (error instanceof BrokerError && error.errorCode === 'lease_not_active') {
      throw new CrabboxError(error.message, { exit: 'notFound', code: 'lease_not_active', hint: 'A released or expired lease stays gone; start a new one with `crabbox warmup`.' })
    }
    throw error
  }
}

/** Heartbeats for a broker lease (said once on stderr when they fail); nothing in direct mode. */
export function leaseHeartbeat(broker: BrokerClient | undefined, lease: Pick<Lease, 'id' | 'idleTimeoutSeconds'>, progress: Progress): Heartbeater {
  if (!broker) return noHeartbeat
  let said = false
  return startHeartbeat(broker, lease, (error) => {
    if (said) return
    said = true
    progress.warn(`lease heartbeat failed (will keep trying): ${(error as Error).message}`)
  })
}
