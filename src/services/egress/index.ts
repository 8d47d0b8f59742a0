import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { ServiceContext } from '../context.js'
import { SIGNAL_EXIT, waitForSignal } from '../stop-signals.js'
import { CrabboxError, usageError } from '../../errors.js'
import { EgressStatus, EgressTicketResponse, type EgressRole } from '../../protocol/egress.js'
import type { Lease } from '../../providers/types.js'
import { accessHeaders, BrokerError, brokerClient, type BrokerClient } from '../../transport/broker/client.js'
import { startClientProxy } from './client-proxy.js'
import { startHostSide } from './host-side.js'
import { daemon, egressAlive, logPath, readPid, readRecord, removeFiles, writeRecord, type EgressRecord } from './local-state.js'
import { installClient, runClient } from './remote-client.js'
import { allowList, EgressRuleError, loopbackListen } from './rules.js'

/**
 * `crabbox egress …`: the lease's apps reach allow-listed sites through the operator's machine.
 * `start` runs both halves: the client (an HTTP CONNECT proxy on the lease's loopback, see
 * remote-client.ts) and the host (here, opening only allow-listed destinations), paired through
 * the broker's egress sockets with one-use tickets of one session.
 */

export interface EgressTargetFlags {
  id: string
  coordinator?: string
}

export interface EgressStartFlags extends EgressTargetFlags {
  profile?: string
  allow?: string
  listen?: string
  daemon?: boolean
}

interface EgressTarget {
  broker: BrokerClient
  lease: Lease
  headers: Record<string, string>
}

const ENDS_CLEANLY = ['the lease was released', 'a newer egress session took over']

const rule = <T>(fn: () => T): T => {
  try {
    return fn()
  } catch (error) {
    if (error instanceof EgressRuleError) throw usageError(error.message)
    throw error
  }
}

/** The broker (`--coordinator` overrides broker.url; the Access credentials go with it) and the lease. */
async function egressTarget(context: ServiceContext, flags: EgressTargetFlags): Promise<EgressTarget> {
  const broker = flags.coordinator ? { ...context.config.broker, url: flags.coordinator.replace(/\/+$/, '') } : context.config.broker
  const config = { ...context.config, broker }
  const client = brokerClient(config)
  if (!client || config.provider === 'local')
    throw new CrabboxError('crabbox egress needs a broker: the egress bridge lives there', {
      exit: 'usage',
      code: 'broker_required',
      hint: 'Configure one (`crabbox login`), or pass --coordinator URL.',
    })
  const { leaseBackend } = await import('../lease.js')
  const backend = await leaseBackend({ config, progress: context.progress })
  const { reachLease } = await import('../network.js')
  const lease = await reachLease(await backend.resolve(flags.id), context, { broker: backend.broker })
  return { broker: client, lease, headers: accessHeaders(broker.access) }
}

export const newSessionId = () => `egress_${randomBytes(8).toString('hex')}`

/** One ticket; a refusal (4xx other than 408/429) is marked fatal so the link stops instead of retrying. */
export async function mintTicket(
  broker: BrokerClient,
  leaseId: string,
  body: { role: EgressRole; sessionID: string; profile?: string; allow?: string[] },
): Promise<string> {
  try {
    const reply = await broker.request('POST', `/v1/leases/${encodeURIComponent(leaseId)}/egress/ticket`, {
      body,
      schema: EgressTicketResponse,
      timeoutMs: 15_000,
    })
    return reply.ticket
  } catch (error) {
    if (error instanceof BrokerError && error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429)
      Object.assign(error, { fatal: true })
    throw error
  }
}

export interface EgressHooks {
  out: (line: string) => void
  err: (line: string) => void
}

const isCleanEnd = (reason: string) => ENDS_CLEANLY.some((end) => reason.endsWith(end))

/**
 * Why egress ended: the first half's reason, unless it is not a clean end and the other half
 * ends cleanly soon after. A released lease closes both halves' sockets, and the lease-side
 * client can stop before the host side has read the broker's close reason.
 */
export async function firstEnd(host: Promise<string>, client: Promise<string>, graceMs = 3000): Promise<string> {
  const tagged = [host, client].map((end, half) => end.then((reason) => ({ reason, half })))
  const first = await Promise.race(tagged)
  if (isCleanEnd(first.reason)) return first.reason
  const other = await Promise.race([
    tagged[1 - first.half]!,
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), graceMs).unref()),
  ])
  return other && isCleanEnd(other.reason) ? other.reason : first.reason
}

/** `egress start` in the foreground (the daemon runs this too): both halves until stopped. */
export async function runEgressStart(context: ServiceContext, flags: EgressStartFlags, hooks: EgressHooks): Promise<void> {
  const allow = rule(() => allowList(flags.profile, flags.allow))
  const listen = rule(() => loopbackListen(flags.listen))
  const { broker, lease, headers } = await egressTarget(context, flags)
  const sessionID = newSessionId()
  const ask = (role: EgressRole) => mintTicket(broker, lease.id, { role, sessionID, profile: flags.profile, allow })
  const firstHost = await ask('host')
  const { SshPool } = await import('../../transport/ssh/pool.js')
  const pool = new SshPool()
  const record: EgressRecord = {
    pid: process.pid,
    leaseId: lease.id,
    slug: lease.slug,
    sessionID,
    brokerUrl: broker.url,
    listen: `${listen.host}:${listen.port}`,
    allow,
    ...(flags.profile ? { profile: flags.profile } : {}),
    hostConnected: false,
    clientListening: false,
    daemon: process.env.CRABBOX_EGRESS_DAEMON === '1',
    startedAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
  }
  const save = (patch: Partial<EgressRecord>) => writeRecord(Object.assign(record, patch, { updatedAt: new Date().toISOString() }))
  let first: string | undefined = firstHost
  const host = startHostSide({
    brokerUrl: broker.url,
    leaseId: lease.id,
    headers,
    allow,
    log: hooks.err,
    nextTicket: () => (first ? Promise.resolve(((t) => ((first = undefined), t))(first)) : ask('host')),
    onUp: () => save({ hostConnected: true }),
  })
  let client: ReturnType<typeof runClient> | undefined
  const signals = waitForSignal(() => (host.stop(), client?.stop()))
  try {
    await installClient(pool, lease.ssh)
    client = runClient(
      pool,
      lease.ssh,
      { brokerUrl: broker.url, leaseId: lease.id, ticket: await ask('client'), listen, headers },
      () => ask('client'),
      hooks.err,
    )
    const where = await client.listening
    save({ clientListening: true })
    hooks.out(`egress for ${lease.slug || lease.id} (${lease.id}), session ${sessionID}`)
    hooks.out(`lease proxy: http://${where} (on the lease; e.g. curl --proxy http://${where} https://…)`)
    hooks.out(`allow: ${allow.join(', ')}`)
    const reason = await firstEnd(host.link.done, client.ended)
    // A clean end reads the same whichever half saw it first.
    if (!signals.stoppedBy()) hooks.err(`egress: ${ENDS_CLEANLY.find((end) => reason.endsWith(end)) ?? reason}`)
    // The lease released or a newer session is a normal end; anything else (a refusal, the client or SSH gone) is not.
    if (!signals.stoppedBy() && !isCleanEnd(reason)) throw new CrabboxError(`egress: ${reason}`, { exit: 'error', code: 'egress_ended' })
  } finally {
    signals.release()
    host.stop()
    client?.stop()
    await pool.closeAll()
    removeFiles(lease.id)
  }
  const stoppedBy = signals.stoppedBy()
  if (stoppedBy) process.exitCode = SIGNAL_EXIT[stoppedBy] ?? 1
}

export interface EgressHalfFlags extends EgressTargetFlags {
  ticket?: string
  session?: string
  profile?: string
  allow?: string
  listen?: string
}

/** Settles when `done` does or a signal comes; the signal's exit code is set. */
async function untilDone(done: Promise<string>, stop: () => void, hooks: EgressHooks): Promise<void> {
  const signals = waitForSignal(stop)
  try {
    const reason = await done
    if (!signals.stoppedBy()) hooks.err(`egress: ${reason}`)
  } finally {
    signals.release()
  }
  const stoppedBy = signals.stoppedBy()
  if (stoppedBy) process.exitCode = SIGNAL_EXIT[stoppedBy] ?? 1
}

/** Tickets for one half: `--ticket` first (if given), then fresh ones minted with this machine's credentials. */
function ticketSource(target: EgressTarget, role: EgressRole, flags: EgressHalfFlags, sessionID: string, allow?: string[]) {
  let first = flags.ticket
  return () => {
    if (first) {
      const ticket = first
      first = undefined
      return Promise.resolve(ticket)
    }
    return mintTicket(target.broker, target.lease.id, { role, sessionID, profile: flags.profile, ...(allow ? { allow } : {}) })
  }
}

/** `egress host`: only the operator's half, for a session whose client runs elsewhere. */
export async function runEgressHost(context: ServiceContext, flags: EgressHalfFlags, hooks: EgressHooks): Promise<void> {
  const allow = rule(() => allowList(flags.profile, flags.allow))
  if (flags.ticket && !flags.session) throw usageError('--ticket needs --session (the session the ticket was minted for)')
  const target = await egressTarget(context, flags)
  const sessionID = flags.session ?? newSessionId()
  const host = startHostSide({
    brokerUrl: target.broker.url,
    leaseId: target.lease.id,
    headers: target.headers,
    allow,
    log: hooks.err,
    nextTicket: ticketSource(target, 'host', flags, sessionID, allow),
    onUp: () => hooks.out(`egress host for ${target.lease.id}, session ${sessionID}; allow: ${allow.join(', ')}`),
  })
  await untilDone(host.link.done, () => host.stop(), hooks)
}

/** `egress client`: only the lease's half (a CONNECT proxy on loopback), for hosts with crabbox installed. */
export async function runEgressClient(context: ServiceContext, flags: EgressHalfFlags, hooks: EgressHooks): Promise<void> {
  const listen = rule(() => loopbackListen(flags.listen))
  if (flags.ticket && !flags.session) throw usageError('--ticket needs --session (the session the ticket was minted for)')
  const target = await egressTarget(context, flags)
  const sessionID = flags.session ?? newSessionId()
  const proxy = await startClientProxy({
    brokerUrl: target.broker.url,
    leaseId: target.lease.id,
    headers: target.headers,
    listen,
    log: hooks.err,
    nextTicket: ticketSource(target, 'client', flags, sessionID),
  })
  hooks.out(`egress client for ${target.lease.id}, session ${sessionID}: proxy http://${proxy.address.host}:${proxy.address.port}`)
  await untilDone(proxy.link.done, () => void proxy.close(), hooks)
  await proxy.close()
}

export interface EgressStatusResult {
  leaseId: string
  local: { running: boolean; pid?: number; daemon: boolean; listen?: string; sessionID?: string; logPath?: string; problem?: string }
  broker?: EgressStatus
  brokerError?: string
}

/** `egress status`: this machine's egress process and the broker's view of the lease's session. */
export async function egressStatus(context: ServiceContext, flags: EgressTargetFlags): Promise<EgressStatusResult> {
  const { broker, lease } = await egressTarget(context, flags)
  const record = readRecord(lease.id)
  const pid = readPid(lease.id) ?? record?.pid
  const running = egressAlive(pid)
  const local: EgressStatusResult['local'] = {
    running,
    ...(pid !== undefined ? { pid } : {}),
    daemon: readPid(lease.id) !== undefined || Boolean(record?.daemon),
    ...(record ? { listen: record.listen, sessionID: record.sessionID } : {}),
    ...(readPid(lease.id) !== undefined ? { logPath: logPath(lease.id) } : {}),
  }
  if (!running && pid !== undefined) local.problem = `egress (pid ${pid}) is not running; it was killed or crashed`
  const result: EgressStatusResult = { leaseId: lease.id, local }
  try {
    result.broker = await broker.request('GET', `/v1/leases/${encodeURIComponent(lease.id)}/egress/status`, {
      schema: EgressStatus,
      timeoutMs: 15_000,
    })
  } catch (error) {
    if (error instanceof BrokerError && error.status === 404) throw error
    result.brokerError = (error as Error).message
  }
  return result
}

/** `egress stop`: stops this machine's egress process for the lease (SIGTERM, SIGKILL after 5 s). */
export async function stopEgress(context: ServiceContext, flags: EgressTargetFlags): Promise<{ leaseId: string; stopped: boolean }> {
  const { lease } = await egressTarget(context, flags)
  return { leaseId: lease.id, stopped: await daemon.stop(lease.id) }
}

const DAEMON_READY_MS = 60_000

/** `egress start --daemon`: the same start, detached with its pid and log under `<state>/egress/`; waits until both halves are up. */
export async function startEgressDaemon(context: ServiceContext, flags: EgressStartFlags, argv: string[]) {
  rule(() => allowList(flags.profile, flags.allow))
  rule(() => loopbackListen(flags.listen))
  const { lease } = await egressTarget(context, flags)
  const existing = [readPid(lease.id), readRecord(lease.id)?.pid].find((pid) => egressAlive(pid))
  if (existing !== undefined)
    return { leaseId: lease.id, pid: existing, alreadyRunning: true, logPath: logPath(lease.id), listen: readRecord(lease.id)?.listen }
  removeFiles(lease.id)
  const args = ['egress', 'start', ...argv.filter((arg) => arg !== '--daemon')]
  const pid = daemon.spawn(lease.id, args, { CRABBOX_EGRESS_DAEMON: '1' })
  const deadline = Date.now() + DAEMON_READY_MS
  while (Date.now() < deadline) {
    const record = readRecord(lease.id)
    if (record?.pid === pid && record.clientListening && record.hostConnected)
      return { leaseId: lease.id, pid, alreadyRunning: false, logPath: logPath(lease.id), listen: record.listen }
    if (!egressAlive(pid)) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  if (egressAlive(pid)) process.kill(pid, 'SIGTERM')
  const tail = readFileSync(logPath(lease.id), 'utf8').slice(-2000).trim()
  removeFiles(lease.id)
  throw new CrabboxError(`egress: the daemon did not come up (log: ${logPath(lease.id)})${tail ? `:\n${tail}` : ''}`, {
    exit: 'error',
    code: 'egress_daemon_failed',
  })
}

/** For `desktop launch --egress PROFILE`: the egress daemon for the lease, started with that profile unless one runs here. */
export async function ensureEgress(context: ServiceContext, flags: { id: string; profile: string; listen: string; provider?: string }) {
  if (!flags.id) throw usageError('--egress needs --id (the lease whose browser goes through egress)')
  const argv = [
    '--id',
    flags.id,
    '--profile',
    flags.profile,
    '--listen',
    flags.listen,
    ...(flags.provider ? ['--provider', flags.provider] : []),
  ]
  const result = await startEgressDaemon(context, { id: flags.id, profile: flags.profile, listen: flags.listen }, argv)
  return { ...result, listen: result.listen ?? flags.listen }
}
