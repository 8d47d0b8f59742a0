import { request as httpRequest } from 'node:http'
import type { Duplex } from 'node:stream'
import type WebSocket from 'ws'
import { CrabboxError, type ExitCodeName } from '../../errors.js'
import { CODE_CLOSE, CODE_SERVER_HOST, CODE_SERVER_PORT, CodeTicketResponse } from '../../protocol/code.js'
import { BrokerError, type AccessCredentials, type BrokerClient } from '../../transport/broker/client.js'
import { AgentDialError, dialAgent } from '../../transport/broker/webvnc.js'
import type { SshPool } from '../../transport/ssh/pool.js'
import type { SshTarget } from '../../transport/ssh/types.js'
import { renderRescue, RescueError, type Rescue } from '../../ui/rescue.js'
import { localForward } from '../local-forward.js'
import { CodeTunnel } from './tunnel.js'

/**
 * The code bridge (`crabbox code`): one agent socket to the broker, opened with a fresh
 * one-use ticket, over which the broker's relay tunnels the portal's requests for
 * `/portal/leases/{id}/code/` to code-server on the runner (tunnel.ts). It reconnects with
 * backoff when the socket drops; a broker refusal, or a newer bridge taking over (1012),
 * ends it with `problem:`/`rescue:` lines.
 */

/** Reconnect delay: 0.5 s × the failed attempts in a row, at most 5 s. */
export const backoffMs = (attempt: number) => Math.min(500 * attempt, 5000)
/** Down this long: one `problem:`/`rescue:` report (it keeps retrying). */
const REPORT_AFTER_MS = 10_000
/** A socket that lasted this long resets the backoff. */
const STABLE_MS = 5000
/** code-server must answer the probe within this. */
const PROBE_TIMEOUT_MS = 10_000

const word = (value: string) => (/^[\w@%+=:,./~-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`)

/** The commands that get a code bridge going again. */
export function codeRescue(leaseId: string): string[] {
  const id = word(leaseId)
  return [
    `crabbox code --id ${id}`,
    `crabbox ssh --id ${id} -- systemctl status crabbox-code-server`,
    `crabbox ssh --id ${id} -- curl -sS -o /dev/null -w '%{http_code}\\n' http://${CODE_SERVER_HOST}:${CODE_SERVER_PORT}/`,
  ]
}

/** A failure that names its layer and how to recover. */
export class CodeBridgeFailure extends RescueError {
  constructor(
    readonly rescue: Rescue,
    exit: ExitCodeName | number,
    code: string,
  ) {
    super([rescue], { exit, code })
    this.name = 'CodeBridgeFailure'
  }
}

export class CodeServerUnavailable extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CodeServerUnavailable'
  }
}

export async function mintCodeTicket(broker: BrokerClient, leaseId: string): Promise<string> {
  const path = `/v1/leases/${encodeURIComponent(leaseId)}/code/ticket`
  return (await broker.request('POST', path, { schema: CodeTicketResponse, timeoutMs: 10_000 })).ticket
}

const transient = (status: number) => status === 0 || status === 408 || status === 429 || status >= 500

function exitOf(status: number): ExitCodeName {
  if (status === 401 || status === 403) return 'auth'
  if (status === 404) return 'notFound'
  return status >= 400 && status < 500 ? 'usage' : 'error'
}

/** A broker refusal as a CodeBridgeFailure; undefined when it is worth retrying. */
export function codeRefusal(error: unknown, leaseId: string): CodeBridgeFailure | undefined {
  const rescue = codeRescue(leaseId)
  if (error instanceof CodeBridgeFailure) return error
  if (error instanceof BrokerError && !transient(error.status))
    return new CodeBridgeFailure(
      { problem: `ticket: the broker refused a code bridge ticket: ${error.message}`, rescue },
      exitOf(error.status),
      'code_ticket_refused',
    )
  if (error instanceof AgentDialError && !transient(error.status))
    return new CodeBridgeFailure(
      { problem: `broker: the code agent socket was refused (http ${error.status}${error.body ? `: ${error.body}` : ''})`, rescue },
      exitOf(error.status),
      'code_agent_refused',
    )
  return undefined
}

/** What a transient failure is called on its `problem:` line. */
export function describeCodeFailure(error: unknown): string {
  if (error instanceof BrokerError || (error instanceof AgentDialError && error.status === 0))
    return `broker: cannot reach the broker: ${(error as Error).message}`
  if (error instanceof AgentDialError) return `broker: the agent socket failed (http ${error.status})`
  if (error instanceof CrabboxError && error.exitCode === 7) return `ssh: ${error.message}`
  return `bridge: ${(error as Error).message}`
}

/**
 * Asks code-server on the runner for `/` over the lease's SSH connection, so a missing
 * code-server is named before the portal shows a broken editor.
 */
export async function probeCodeServer(open: () => Promise<Duplex>): Promise<number> {
  let stream: Duplex
  try {
    stream = await open()
  } catch (error) {
    if (error instanceof CrabboxError) throw error
    throw new CodeServerUnavailable(
      `nothing answers on ${CODE_SERVER_HOST}:${CODE_SERVER_PORT} on the runner (${(error as Error).message})`,
    )
  }
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.destroy()
      reject(
        new CodeServerUnavailable(
          `${CODE_SERVER_HOST}:${CODE_SERVER_PORT} on the runner sent no HTTP answer within ${PROBE_TIMEOUT_MS / 1000} s`,
        ),
      )
    }, PROBE_TIMEOUT_MS)
    const request = httpRequest({
      method: 'GET',
      path: '/',
      headers: { host: `${CODE_SERVER_HOST}:${CODE_SERVER_PORT}` },
      createConnection: () => stream as never,
    })
    request.once('response', (response) => {
      clearTimeout(timer)
      response.resume()
      stream.destroy()
      resolve(response.statusCode ?? 0)
    })
    request.once('error', (error) => {
      clearTimeout(timer)
      stream.destroy()
      reject(new CodeServerUnavailable(`${CODE_SERVER_HOST}:${CODE_SERVER_PORT} on the runner does not speak HTTP (${error.message})`))
    })
    request.end()
  })
}

export interface CodeBridgeOptions {
  leaseId: string
  broker: BrokerClient
  access?: AccessCredentials
  target: SshTarget
  pool: SshPool
  /** Also forward 127.0.0.1:<port> here to code-server on the runner. */
  localPort?: number
  log: (line: string) => void
  /** Called when the agent socket opens (true) or drops (false). */
  onConnected?: (connected: boolean) => void
}

export interface CodeBridge {
  /** Rejects with a CodeBridgeFailure on a fatal error; resolves after `stop()`. */
  done: Promise<void>
  readonly localPort?: number
  stop(): Promise<void>
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted || ms <= 0) return resolve()
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true })
  })

/** Serves the agent socket until it closes; resolves with the close code. */
function serve(socket: WebSocket, tunnel: CodeTunnel): Promise<number> {
  return new Promise((resolve) => {
    socket.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (isBinary) return
      const text = Buffer.isBuffer(data)
        ? data.toString('utf8')
        : Array.isArray(data)
          ? Buffer.concat(data).toString('utf8')
          : Buffer.from(data).toString('utf8')
      tunnel.handle(text)
    })
    socket.on('error', () => undefined)
    socket.once('close', (code: number) => {
      tunnel.close()
      resolve(code)
    })
    // dialAgent hands the socket over paused, so nothing arrived before these handlers.
    socket.resume()
  })
}

/** Starts the bridge; the first ticket was minted (and code-server probed) by the caller. */
export function startCodeBridge(options: CodeBridgeOptions, firstTicket?: string): CodeBridge {
  const stopping = new AbortController()
  let current: WebSocket | undefined
  let ticket = firstTicket
  const open = () => options.pool.forwardOut(options.target, CODE_SERVER_HOST, CODE_SERVER_PORT)

  async function dial(): Promise<WebSocket> {
    const once = async (queryTicket: boolean) => {
      const fresh = ticket ?? (await mintCodeTicket(options.broker, options.leaseId))
      ticket = undefined
      return dialAgent({
        brokerUrl: options.broker.url,
        leaseId: options.leaseId,
        ticket: fresh,
        access: options.access,
        queryTicket,
        bridge: 'code',
      })
    }
    try {
      return await once(false)
    } catch (error) {
      // A broker that reads the ticket only from the query refuses the header form with 401.
      if (!(error instanceof AgentDialError && error.status === 401)) throw error
      return once(true)
    }
  }

  async function loop(): Promise<void> {
    let attempt = 0
    let downSince: number | undefined
    let reported = false
    while (!stopping.signal.aborted) {
      let socket: WebSocket
      try {
        socket = await dial()
      } catch (error) {
        const refused = codeRefusal(error, options.leaseId)
        if (refused) throw refused
        attempt++
        downSince ??= Date.now()
        if (!reported && Date.now() - downSince >= REPORT_AFTER_MS) {
          reported = true
          options.log('code bridge: still reconnecting')
          options.log(renderRescue({ problem: describeCodeFailure(error), rescue: codeRescue(options.leaseId) }).trimEnd())
        }
        await sleep(backoffMs(attempt), stopping.signal)
        continue
      }
      if (stopping.signal.aborted) {
        socket.resume()
        socket.close(1000)
        break
      }
      if (reported) options.log('code bridge: reconnected')
      downSince = undefined
      reported = false
      current = socket
      options.onConnected?.(true)
      const openedAt = Date.now()
      const code = await serve(socket, new CodeTunnel(socket, open, options.log))
      current = undefined
      options.onConnected?.(false)
      if (stopping.signal.aborted) break
      if (code === CODE_CLOSE.replaced)
        throw new CodeBridgeFailure(
          {
            problem: 'bridge: a newer code bridge for this lease took over (1012); this one stops',
            rescue: codeRescue(options.leaseId),
          },
          'error',
          'code_bridge_replaced',
        )
      options.log(`code bridge: the agent socket closed (${code}); reconnecting`)
      if (Date.now() - openedAt >= STABLE_MS) attempt = 0
      else {
        attempt++
        await sleep(backoffMs(attempt), stopping.signal)
      }
    }
  }

  const local = options.localPort === undefined ? undefined : localForward(open)
  const busy = (problem: string) =>
    new CodeBridgeFailure({ problem, rescue: [`crabbox code --id ${word(options.leaseId)}`] }, 'usage', 'local_port_busy')
  const looping = loop()
  const done = (async () => {
    if (local) await local.listen(options.localPort!, busy)
    await looping
  })()
  const bridge: CodeBridge = {
    done,
    get localPort() {
      const address = local?.server.address()
      return address && typeof address === 'object' ? address.port : options.localPort
    },
    async stop() {
      stopping.abort()
      current?.close(1000, 'bridge stopped')
      local?.close()
      await looping.catch(() => undefined)
    },
  }
  done.catch(() => bridge.stop())
  return bridge
}
