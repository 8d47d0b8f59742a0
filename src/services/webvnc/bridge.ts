import type { Duplex } from 'node:stream'
import type WebSocket from 'ws'
import { CrabboxError, type ExitCodeName } from '../../errors.js'
import { WebVncTicketResponse } from '../../protocol/webvnc.js'
import { BrokerError, type AccessCredentials, type BrokerClient } from '../../transport/broker/client.js'
import { AgentDialError, dialAgent } from '../../transport/broker/webvnc.js'
import type { SshPool } from '../../transport/ssh/pool.js'
import type { SshTarget } from '../../transport/ssh/types.js'
import { desktopRescue, renderRescue, RescueError, type Rescue } from '../../ui/rescue.js'
import { localForward } from '../local-forward.js'
import { VNC_PASSWORD_PATHS, vncPasswordCommand } from '../desktop/targets.js'

/**
 * The WebVNC bridge: a small pool of agent sockets to the broker, each opened with a fresh
 * one-use ticket; every agent socket is paired with one TCP stream to the runner's loopback
 * VNC over the lease's pooled ssh2 connection (`direct-tcpip`), and raw RFB bytes are relayed
 * both ways. The broker gives each agent socket to at most one viewer and closes it (1011)
 * when that viewer leaves, or all of them (1012) on reset; the slot then dials again.
 */

/** Agent sockets held at once (each serves one viewer). */
export const WEBVNC_SLOTS = 4
/** The runner's VNC server, loopback only. */
export const VNC_HOST = '127.0.0.1'
export const VNC_PORT = 5900
/** Reconnect delay: 0.5 s × the failed attempts in a row, at most 5 s. */
export const backoffMs = (attempt: number) => Math.min(500 * attempt, 5000)
/** A slot down this long prints `problem:`/`rescue:` once (it keeps retrying). */
const REPORT_AFTER_MS = 10_000
/** A relay that lasted this long resets the backoff. */
const STABLE_MS = 5000
/** The RFB banner must come within this. */
const BANNER_TIMEOUT_MS = 5000
/** Above this many unsent bytes on the agent socket, the VNC stream is paused. */
const HIGH_WATER = 1024 * 1024

/** A failure that names its layer and how to recover; the command prints it and exits with `exit`. */
export class BridgeFailure extends RescueError {
  constructor(
    readonly rescue: Rescue,
    exit: ExitCodeName | number,
    code: string,
  ) {
    super([rescue], { exit, code })
    this.name = 'BridgeFailure'
  }
}

export interface BridgeOptions {
  leaseId: string
  broker: BrokerClient
  access?: AccessCredentials
  target: SshTarget
  pool: SshPool
  slots?: number
  vncPort?: number
  /** Also serve the runner's VNC on 127.0.0.1:<port> here, for native viewers. */
  localPort?: number
  /** Lines for people (stderr in the foreground, the log in the daemon). */
  log: (line: string) => void
  /** Called whenever the number of open agent sockets changes. */
  onState?: (state: BridgeState) => void
}

export interface BridgeState {
  slots: number
  connected: number
  relaying: number
  lastProblem?: string
}

export interface Bridge {
  /** Settles when the bridge stops: rejects with a BridgeFailure on a fatal error, resolves after `stop()`. */
  done: Promise<void>
  state(): BridgeState
  /** The local VNC port, when one was asked for. */
  localPort?: number
  stop(): Promise<void>
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted || ms <= 0) return resolve()
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true })
  })

const ticketPath = (leaseId: string) => `/v1/leases/${encodeURIComponent(leaseId)}/webvnc/ticket`

/** Mints one ticket; a refusal is fatal (the broker said no), an unreachable broker or 5xx is not. */
export async function mintTicket(broker: BrokerClient, leaseId: string): Promise<string> {
  const reply = await broker.request('POST', ticketPath(leaseId), { schema: WebVncTicketResponse, timeoutMs: 10_000 })
  return reply.ticket
}

const transient = (status: number) => status === 0 || status === 408 || status === 429 || status >= 500

/** A broker refusal as a BridgeFailure; undefined when it is worth retrying. */
export function refusal(error: unknown, leaseId: string): BridgeFailure | undefined {
  const rescue = desktopRescue(leaseId)
  if (error instanceof BridgeFailure) return error
  if (error instanceof BrokerError) {
    if (transient(error.status)) return undefined
    return new BridgeFailure(
      { problem: `ticket: the broker refused a WebVNC ticket: ${error.message}`, rescue },
      exitOf(error.status),
      'webvnc_ticket_refused',
    )
  }
  if (error instanceof AgentDialError) {
    if (transient(error.status)) return undefined
    return new BridgeFailure(
      { problem: `broker: the WebVNC agent socket was refused (http ${error.status}${error.body ? `: ${error.body}` : ''})`, rescue },
      exitOf(error.status),
      'webvnc_agent_refused',
    )
  }
  return undefined
}

function exitOf(status: number): ExitCodeName {
  if (status === 401 || status === 403) return 'auth'
  if (status === 404) return 'notFound'
  return status >= 400 && status < 500 ? 'usage' : 'error'
}

/** What a transient failure is called on its `problem:` line. */
export function describeFailure(error: unknown): string {
  if (error instanceof VncUnavailable) return `vnc: ${error.message}`
  if (error instanceof BrokerError || (error instanceof AgentDialError && error.status === 0))
    return `broker: cannot reach the broker: ${(error as Error).message}`
  if (error instanceof AgentDialError) return `broker: the agent socket failed (http ${error.status})`
  if (error instanceof CrabboxError && error.exitCode === 7) return `ssh: ${error.message}`
  return `bridge: ${(error as Error).message}`
}

export class VncUnavailable extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'VncUnavailable'
  }
}

/** A stream to the runner's VNC; a refused connect or a lost SSH connection is VncUnavailable. */
async function openVnc(pool: SshPool, target: SshTarget, port: number): Promise<Duplex> {
  try {
    return await pool.forwardOut(target, VNC_HOST, port)
  } catch (error) {
    if (error instanceof CrabboxError) throw error
    throw new VncUnavailable(`the runner's VNC on ${VNC_HOST}:${port} did not answer (${(error as Error).message})`)
  }
}

/**
 * Checks that the runner's VNC answers with an RFB banner before any socket is opened, so a
 * missing VNC server is named at once instead of on the first viewer.
 */
export async function probeVnc(pool: SshPool, target: SshTarget, port = VNC_PORT): Promise<string> {
  const stream = await openVnc(pool, target, port)
  try {
    return await new Promise<string>((resolve, reject) => {
      let seen = ''
      const timer = setTimeout(
        () => reject(new VncUnavailable(`the runner's VNC on ${VNC_HOST}:${port} sent no RFB banner within ${BANNER_TIMEOUT_MS / 1000} s`)),
        BANNER_TIMEOUT_MS,
      )
      stream.on('data', (chunk: Buffer) => {
        seen += chunk.toString('latin1')
        if (seen.length < 12) return
        clearTimeout(timer)
        if (seen.startsWith('RFB ')) resolve(seen.slice(0, 11))
        else reject(new VncUnavailable(`the runner's ${VNC_HOST}:${port} does not speak RFB`))
      })
      stream.once('close', () => {
        clearTimeout(timer)
        reject(new VncUnavailable(`the runner's VNC on ${VNC_HOST}:${port} closed the connection`))
      })
      stream.once('error', () => undefined)
    })
  } finally {
    stream.destroy()
  }
}

/** Where the desktop bootstrap keeps the per-lease VNC password (readable by the lease user only). */
export const VNC_PASSWORD_PATH = VNC_PASSWORD_PATHS.linux

/**
 * The runner's VNC password for the portal URL's fragment (the page reads it; a fragment never
 * reaches the broker), or '' when it cannot be read within 10 s (the page then asks for it).
 * Read where the runner's OS keeps it (a macOS runner: the Screen Sharing password).
 */
export async function readVncPassword(pool: SshPool, target: SshTarget, os: 'linux' | 'macos' = 'linux'): Promise<string> {
  let out = ''
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(), 10_000)
  try {
    const result = await pool.exec(target, `${vncPasswordCommand(os)} 2>/dev/null`, {
      onStdout: (chunk) => (out += chunk.toString('utf8')),
      signal: abort.signal,
    })
    return result.code === 0 ? out.trim() : ''
  } catch {
    return ''
  } finally {
    clearTimeout(timer)
  }
}

/** Reads the 12-byte RFB banner a fresh VNC stream sends first; the rest stays unread. */
function readBanner(vnc: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = Buffer.alloc(0)
    const timer = setTimeout(
      () => done(new VncUnavailable(`the runner's VNC sent no RFB banner within ${BANNER_TIMEOUT_MS / 1000} s`)),
      BANNER_TIMEOUT_MS,
    )
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk])
      if (seen.length < 12) return
      vnc.pause()
      if (seen.length > 12) vnc.unshift(seen.subarray(12))
      done(undefined, seen.subarray(0, 12).toString('latin1'))
    }
    const onClose = () => done(new VncUnavailable("the runner's VNC closed the connection"))
    const done = (error?: Error, banner?: string) => {
      clearTimeout(timer)
      vnc.off('data', onData)
      vnc.off('close', onClose)
      if (error) reject(error)
      else resolve(banner!)
    }
    vnc.on('data', onData)
    vnc.once('close', onClose)
    vnc.on('error', () => undefined)
  })
}

/**
 * Relays bytes between the agent socket and a VNC stream until either closes; resolves with
 * the socket's close code. The stream is opened only when the viewer answers: until then the
 * bridge itself sends the runner's RFB banner (read by the probe). An open but unanswered RFB
 * connection is an uninitialised client to x11vnc, which then sends no clipboard text to
 * anyone, so the idle slots must not hold one.
 */
function relay(socket: WebSocket, openStream: () => Promise<Duplex>, banner: string): Promise<number> {
  return new Promise((resolve) => {
    let vnc: Duplex | undefined
    let opening: Promise<void> | undefined
    let closed = false
    const pending: Buffer[] = []
    const attach = (stream: Duplex) => {
      let paused = false
      stream.on('data', (chunk: Buffer) => {
        socket.send(chunk, { binary: true }, () => {
          if (paused && socket.bufferedAmount < HIGH_WATER / 2) {
            paused = false
            stream.resume()
          }
        })
        if (socket.bufferedAmount > HIGH_WATER && !paused) {
          paused = true
          stream.pause()
        }
      })
      stream.once('close', () => socket.close(1000, 'VNC stream closed'))
      stream.resume()
    }
    const write = (chunk: Buffer) => {
      if (!vnc!.write(chunk)) {
        socket.pause()
        vnc!.once('drain', () => socket.resume())
      }
    }
    const open = async () => {
      try {
        const stream = await openStream()
        stream.on('error', () => undefined)
        if (closed) return void stream.destroy()
        const real = await readBanner(stream)
        if (real !== banner) throw new VncUnavailable(`the runner's VNC changed its RFB banner (${real.trim()})`)
        if (closed) return void stream.destroy()
        vnc = stream
        attach(stream)
        for (const chunk of pending.splice(0)) write(chunk)
      } catch {
        socket.close(1011, 'VNC stream failed')
      }
    }
    socket.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      const chunk = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
      if (vnc) return write(chunk)
      pending.push(chunk)
      opening ??= open()
    })
    socket.on('error', () => undefined)
    socket.once('close', (code: number) => {
      closed = true
      vnc?.destroy()
      resolve(code)
    })
    // dialAgent hands the socket over paused, so nothing arrived before these handlers.
    socket.resume()
    socket.send(Buffer.from(banner, 'latin1'), { binary: true })
  })
}

/** Starts the bridge; the first ticket was minted (and the VNC probed) by the caller. */
export function startBridge(options: BridgeOptions, firstTicket?: string): Bridge {
  const slots = options.slots ?? WEBVNC_SLOTS
  const vncPort = options.vncPort ?? VNC_PORT
  const stopping = new AbortController()
  const sockets = new Set<WebSocket>()
  const state: BridgeState = { slots, connected: 0, relaying: 0 }
  const changed = () => options.onState?.({ ...state })
  let fatal: ((error: BridgeFailure) => void) | undefined
  const failed = new Promise<never>((_resolve, reject) => (fatal = reject))
  failed.catch(() => undefined)
  let ticket = firstTicket
  let lastReportAt = 0

  /** One agent socket, once the runner's VNC answered with its banner (the stream itself waits for a viewer). */
  async function connectOnce(): Promise<{ socket: WebSocket; banner: string }> {
    const banner = await probeVnc(options.pool, options.target, vncPort)
    const dial = async (queryTicket: boolean) => {
      const fresh = ticket ?? (await mintTicket(options.broker, options.leaseId))
      ticket = undefined
      return dialAgent({ brokerUrl: options.broker.url, leaseId: options.leaseId, ticket: fresh, access: options.access, queryTicket })
    }
    let socket: WebSocket
    try {
      socket = await dial(false)
    } catch (error) {
      // A broker that reads the ticket only from the query refuses the header form with 401.
      if (!(error instanceof AgentDialError && error.status === 401)) throw error
      socket = await dial(true)
    }
    return { socket, banner: `${banner}\n` }
  }

  async function runSlot(index: number): Promise<void> {
    let attempt = 0
    let downSince: number | undefined
    let reported = false
    while (!stopping.signal.aborted) {
      let opened: { socket: WebSocket; banner: string } | undefined
      try {
        opened = await connectOnce()
      } catch (error) {
        const refused = refusal(error, options.leaseId)
        if (refused) return fatal?.(refused)
        attempt++
        downSince ??= Date.now()
        state.lastProblem = describeFailure(error)
        if (!reported && Date.now() - downSince >= REPORT_AFTER_MS) {
          reported = true
          // One report per outage for the whole pool, not one per slot.
          if (Date.now() - lastReportAt >= REPORT_AFTER_MS) {
            lastReportAt = Date.now()
            options.log(`slot ${index + 1}: still reconnecting`)
            options.log(renderProblem(state.lastProblem, options.leaseId))
          }
          changed()
        }
        await sleep(backoffMs(attempt), stopping.signal)
        continue
      }
      if (stopping.signal.aborted) {
        opened.socket.resume()
        opened.socket.close(1000)
        break
      }
      if (reported) options.log(`slot ${index + 1}: reconnected`)
      downSince = undefined
      reported = false
      sockets.add(opened.socket)
      state.connected++
      let gotViewer = false
      opened.socket.once('message', () => {
        gotViewer = true
        state.relaying++
        changed()
      })
      changed()
      const openedAt = Date.now()
      const code = await relay(opened.socket, () => openVnc(options.pool, options.target, vncPort), opened.banner)
      sockets.delete(opened.socket)
      state.connected--
      if (gotViewer) state.relaying--
      changed()
      // 1011/1012 (the viewer left, a reset) or a session that lasted: dial again at once.
      // Anything else, e.g. a VNC server that drops every new stream at once: back off.
      if (code === 1011 || code === 1012 || Date.now() - openedAt >= STABLE_MS) {
        attempt = 0
      } else {
        attempt++
        await sleep(backoffMs(attempt), stopping.signal)
      }
    }
  }

  // 127.0.0.1:<port> here → the runner's VNC, for native viewers.
  const local = options.localPort === undefined ? undefined : localForward(() => openVnc(options.pool, options.target, vncPort))
  const busy = (problem: string) =>
    new BridgeFailure({ problem, rescue: [`crabbox webvnc --id ${options.leaseId}`] }, 'usage', 'local_port_busy')

  const slotsDone = Promise.all(Array.from({ length: slots }, (_, index) => runSlot(index)))
  const done = (async () => {
    if (local) await local.listen(options.localPort!, busy)
    await Promise.race([slotsDone, failed])
  })()

  const bridge: Bridge = {
    done,
    state: () => ({ ...state }),
    get localPort() {
      const address = local?.server.address()
      return address && typeof address === 'object' ? address.port : options.localPort
    },
    async stop() {
      stopping.abort()
      for (const socket of sockets) socket.close(1000, 'bridge stopped')
      local?.close()
      await slotsDone.catch(() => undefined)
    },
  }
  done.catch(() => bridge.stop())
  return bridge
}

/** `problem:`/`rescue:` lines for a failure the bridge keeps retrying. */
export function renderProblem(problem: string, leaseId: string): string {
  return renderRescue({ problem, rescue: desktopRescue(leaseId) }).trimEnd()
}
