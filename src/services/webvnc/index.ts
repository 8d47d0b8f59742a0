import { runUntilStopped, SIGNAL_EXIT } from '../stop-signals.js'
import { readFileSync } from 'node:fs'
import type { ServiceContext } from '../context.js'
import { CrabboxError } from '../../errors.js'
import { WebVncResetResponse, WebVncStatus } from '../../protocol/webvnc.js'
import { BrokerError, type BrokerClient } from '../../transport/broker/client.js'
import type { Lease } from '../../providers/types.js'
import { desktopRescue } from '../../ui/rescue.js'
import { leaseOS, type LeaseOS } from '../ssh.js'
import { desktopRefusal } from '../desktop/targets.js'
import {
  BridgeFailure,
  describeFailure,
  mintTicket,
  probeVnc,
  readVncPassword,
  refusal,
  startBridge,
  VncUnavailable,
  WEBVNC_SLOTS,
} from './bridge.js'
import {
  bridgeAlive,
  type BridgeRecord,
  daemon,
  knownBridges,
  logPath,
  readPid,
  readRecord,
  removeFiles,
  writeRecord,
} from './local-state.js'
import { brokerBridgeLease } from '../bridge-lease.js'
import { openUrl } from '../open-url.js'
import type { LocalBridgeView } from '../../ui/webvnc.js'

export { BridgeFailure } from './bridge.js'

export interface WebVncFlags {
  id: string
  localPort?: number
  open?: boolean
}

interface BridgeLease {
  lease: Lease
  broker: BrokerClient
  /** Where the VNC password is read (Linux's x11vnc or macOS Screen Sharing). */
  os: 'linux' | 'macos'
}

/** The lease through the broker; WebVNC relays through the broker, so direct mode has none. */
async function bridgeLease(context: ServiceContext, id: string): Promise<BridgeLease> {
  let os: LeaseOS = { target: 'linux' }
  const { lease, broker } = await brokerBridgeLease(
    context,
    id,
    {
      message: 'crabbox webvnc needs a broker: the WebVNC relay and the portal viewer live there',
      hint: `Configure one (\`crabbox login\`), or use the native VNC fallback: crabbox vnc --id ${id}`,
    },
    (resolved) => {
      // An OS that cannot have VNC is refused before any SSH (exit 2), with the reason.
      os = leaseOS(resolved, { target: 'linux' })
      const refused = desktopRefusal(os.target, 'vnc', { windowsMode: os.windowsMode, staticHost: resolved.provider === 'static' })
      if (refused)
        throw new CrabboxError(`crabbox webvnc on ${id} (${os.target}): ${refused}`, { exit: 'usage', code: 'unsupported_target' })
    },
  )
  return { lease, broker, os: os.target === 'macos' ? 'macos' : 'linux' }
}

export const portalUrl = (broker: BrokerClient, leaseId: string) => `${broker.url}/portal/leases/${encodeURIComponent(leaseId)}/vnc`

export interface BridgeHooks {
  /** Lines for stdout (what the bridge is, where to look). */
  out: (line: string) => void
  /** Lines for stderr (reconnects, problems). */
  err: (line: string) => void
}

/**
 * Runs the bridge in this process until it is stopped or fails. Before any socket: one ticket
 * (the broker is reachable and lets us) and the runner's VNC banner, each failing at once with
 * its layer named.
 */
export async function runBridge(context: ServiceContext, flags: WebVncFlags, hooks: BridgeHooks): Promise<void> {
  let resolved: BridgeLease
  try {
    resolved = await bridgeLease(context, flags.id)
  } catch (error) {
    // The broker not answering at all is the bridge's first layer: name it, with the way back.
    if (error instanceof BrokerError && error.status === 0)
      throw new BridgeFailure({ problem: `broker: ${error.message}`, rescue: desktopRescue(flags.id) }, 'error', 'broker_unreachable')
    throw error
  }
  const { lease, broker, os } = resolved
  const rescue = desktopRescue(lease.id)
  let ticket: string
  try {
    ticket = await mintTicket(broker, lease.id)
  } catch (error) {
    throw refusal(error, lease.id) ?? new BridgeFailure({ problem: describeFailure(error), rescue }, 'error', 'broker_unreachable')
  }
  const { SshPool } = await import('../../transport/ssh/pool.js')
  const pool = new SshPool()
  try {
    await probeVnc(pool, lease.ssh)
  } catch (error) {
    await pool.closeAll()
    if (error instanceof VncUnavailable) throw new BridgeFailure({ problem: `vnc: ${error.message}`, rescue }, 'error', 'vnc_unavailable')
    if (error instanceof CrabboxError)
      throw new BridgeFailure({ problem: `ssh: ${error.message}`, rescue: rescue.slice(1) }, error.exitCode === 7 ? 'ssh' : 'error', 'ssh')
    throw error
  }

  const startedAt = new Date().toISOString()
  const password = await readVncPassword(pool, lease.ssh, os)
  const portal = password ? `${portalUrl(broker, lease.id)}#password=${encodeURIComponent(password)}` : portalUrl(broker, lease.id)
  const daemon = process.env.CRABBOX_WEBVNC_DAEMON === '1'
  let announced = false
  const bridge = startBridge(
    {
      leaseId: lease.id,
      broker,
      access: context.config.broker.access,
      target: lease.ssh,
      pool,
      slots: WEBVNC_SLOTS,
      localPort: flags.localPort,
      log: hooks.err,
      onState: (state) => {
        const record: BridgeRecord = {
          pid: process.pid,
          leaseId: lease.id,
          slug: lease.slug ?? '',
          brokerUrl: broker.url,
          portalUrl: portal,
          ...state,
          localPort: bridge?.localPort,
          daemon,
          startedAt,
          updatedAt: new Date().toISOString(),
        }
        writeRecord(record)
        if (!announced && state.connected > 0) {
          announced = true
          hooks.out(`WebVNC bridge for ${lease.slug || lease.id} (${lease.id}): agent sockets open to ${broker.url}`)
          hooks.out(`portal: ${portal}`)
          if (bridge?.localPort !== undefined) hooks.out(`local VNC: 127.0.0.1:${bridge.localPort}`)
          if (flags.open && !openUrl(portal)) hooks.err('could not open a browser here; open the portal URL above')
        }
      },
    },
    ticket,
  )

  const stoppedBy = await runUntilStopped(bridge, async () => {
    await pool.closeAll()
    removeFiles(lease.id, ['record'])
  })
  if (stoppedBy) {
    throw new BridgeFailure(
      { problem: `bridge: the WebVNC bridge was stopped (${stoppedBy}); viewers lost their connection`, rescue },
      SIGNAL_EXIT[stoppedBy] ?? 1,
      'bridge_stopped',
    )
  }
}

/** What `webvnc status` shows of this machine's side (rendered by ui/webvnc.ts). */
export type LocalBridgeState = LocalBridgeView

/** What this machine knows about the bridge for `leaseId`: its record, the daemon's pid, whether either is alive. */
export function localBridge(leaseId: string): LocalBridgeState {
  const record = readRecord(leaseId)
  const pid = readPid(leaseId) ?? record?.pid
  const running = bridgeAlive(pid)
  const state: LocalBridgeState = {
    leaseId,
    running,
    pid,
    daemon: readPid(leaseId) !== undefined || Boolean(record?.daemon),
    connected: running ? (record?.connected ?? 0) : 0,
    relaying: running ? (record?.relaying ?? 0) : 0,
    slots: record?.slots ?? WEBVNC_SLOTS,
    localPort: record?.localPort,
    lastProblem: record?.lastProblem,
    logPath: readPid(leaseId) !== undefined ? logPath(leaseId) : undefined,
  }
  if (!running && pid !== undefined) state.problem = `bridge: the WebVNC bridge (pid ${pid}) is not running; it was killed or crashed`
  return state
}

export interface WebVncStatusResult {
  leaseId: string
  local: LocalBridgeState
  broker?: WebVncStatus
  brokerError?: string
  rescue: string[]
}

/** `webvnc status`: the local bridge and the broker's view of it. */
export async function webvncStatus(context: ServiceContext, id: string): Promise<WebVncStatusResult> {
  const { lease, broker } = await bridgeLease(context, id)
  const local = localBridge(lease.id)
  const result: WebVncStatusResult = { leaseId: lease.id, local, rescue: desktopRescue(lease.id) }
  try {
    result.broker = await broker.request('GET', `/v1/leases/${encodeURIComponent(lease.id)}/webvnc/status`, {
      schema: WebVncStatus,
      timeoutMs: 10_000,
    })
  } catch (error) {
    result.brokerError = (error as Error).message
  }
  return result
}

export interface WebVncResetResult {
  leaseId: string
  reset: WebVncResetResponse
  daemon?: { restarted: boolean; pid?: number }
}

/** `webvnc reset`: the broker closes every viewer and agent socket; a local daemon is restarted. */
export async function webvncReset(context: ServiceContext, id: string): Promise<WebVncResetResult> {
  const { lease, broker } = await bridgeLease(context, id)
  const reset = await broker.request('POST', `/v1/leases/${encodeURIComponent(lease.id)}/webvnc/reset`, {
    schema: WebVncResetResponse,
    timeoutMs: 30_000,
  })
  const result: WebVncResetResult = { leaseId: lease.id, reset }
  // A daemon (alive or killed) is started again; a foreground bridge reconnects by itself.
  if (readPid(lease.id) !== undefined) {
    const record = readRecord(lease.id)
    await stopDaemon(lease.id)
    const started = await startDaemon(context, { id: lease.id, localPort: record?.localPort })
    result.daemon = { restarted: true, pid: started.pid }
  }
  return result
}

export interface DaemonStartResult {
  leaseId: string
  pid: number
  alreadyRunning: boolean
  logPath: string
  portalUrl?: string
}

const DAEMON_READY_MS = 30_000

/**
 * Starts `crabbox webvnc --id …` as a detached process that outlives this shell (its own
 * session, output to the log), records its pid, and waits until it holds an agent socket or
 * exits; an exit prints the daemon's own problem/rescue lines.
 */
export async function startDaemon(context: ServiceContext, flags: WebVncFlags): Promise<DaemonStartResult> {
  const { lease, broker } = await bridgeLease(context, flags.id)
  // A daemon, or a bridge in some terminal: either already holds this lease's sockets.
  const existing = [readPid(lease.id), readRecord(lease.id)?.pid].find((pid) => bridgeAlive(pid))
  if (existing !== undefined)
    return {
      leaseId: lease.id,
      pid: existing!,
      alreadyRunning: true,
      logPath: logPath(lease.id),
      portalUrl: readRecord(lease.id)?.portalUrl ?? portalUrl(broker, lease.id),
    }
  removeFiles(lease.id)
  const args = ['webvnc', '--id', lease.id, ...(flags.localPort !== undefined ? ['--local-port', String(flags.localPort)] : [])]
  const pid = daemon.spawn(lease.id, args, { CRABBOX_WEBVNC_DAEMON: '1' })
  const deadline = Date.now() + DAEMON_READY_MS
  while (Date.now() < deadline) {
    const record = readRecord(lease.id)
    if (record && record.pid === pid && record.connected > 0) {
      // The daemon's URL carries the VNC password in its fragment when it could read it.
      const url = record.portalUrl ?? portalUrl(broker, lease.id)
      if (flags.open) openUrl(url)
      return { leaseId: lease.id, pid, alreadyRunning: false, logPath: logPath(lease.id), portalUrl: url }
    }
    if (!bridgeAlive(pid)) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const tail = readLogTail(lease.id)
  const problem = /^problem: (.*)$/m.exec(tail)?.[1]
  if (bridgeAlive(pid)) process.kill(pid, 'SIGTERM')
  removeFiles(lease.id)
  throw new BridgeFailure(
    {
      problem: problem ?? `bridge: the WebVNC daemon did not connect within ${DAEMON_READY_MS / 1000} s (log: ${logPath(lease.id)})`,
      rescue: desktopRescue(lease.id),
    },
    'error',
    'daemon_failed',
  )
}

function readLogTail(leaseId: string): string {
  try {
    return readFileSync(logPath(leaseId), 'utf8').slice(-4000)
  } catch {
    return ''
  }
}

/** Stops the daemon for `leaseId` (SIGTERM, then SIGKILL after 5 s); true when one was running. */
export const stopDaemon = (leaseId: string): Promise<boolean> => daemon.stop(leaseId)

export interface DaemonListResult {
  daemons: LocalBridgeState[]
}

/** The daemons and bridges this machine knows of (all, or the one `id` names: a lease ID or slug). */
export function daemonStatus(id?: string): DaemonListResult {
  return { daemons: knownBridges(id).map((leaseId) => localBridge(leaseId)) }
}

/** Stops the daemons `id` names (all without it). */
export async function daemonStop(id?: string): Promise<{ stopped: string[] }> {
  const stopped: string[] = []
  for (const leaseId of knownBridges(id)) if (await stopDaemon(leaseId)) stopped.push(leaseId)
  return { stopped }
}
