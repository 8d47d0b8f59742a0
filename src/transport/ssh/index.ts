import type { Duplex } from 'node:stream'
import type { Progress } from '../../ui/progress.js'
import type { Socket } from 'node:net'
import { AgentLost, AgentOutdated, AgentUnresponsive, agentDisabled, agentExec, agentRequest, reachAgent } from './agent-client.js'
import type { SshPool } from './pool.js'
import { candidatePorts, DEFAULT_CONNECT_TIMEOUT_MS } from './ports.js'
import { defaultAgentIdleTimeout } from './settings.js'
import { holdStdin } from './streams.js'
import type { ExecOptions, ShellOptions, SshSession, SshTarget } from './types.js'

export interface OpenSessionOptions {
  progress?: Progress
  /** Route execs through the per-user connection agent (default: yes, unless CRABBOX_NO_AGENT=1). */
  useAgent?: boolean
  connectTimeoutMs?: number
  /** How long a started agent keeps an unused connection; default: settings.ts, set from config `agent.idleTimeout` (10 min). */
  agentIdleTimeoutMs?: number
  /**
   * Connect with the first exec instead of now (through the agent): one request to the agent
   * for a warm command. Connection errors (same messages and exit codes) then surface from that
   * exec, and `port` is known only after it. For a caller that runs a command at once (`ssh -- cmd`).
   */
  connectWithExec?: boolean
}

let pool: SshPool | undefined
/** The process-wide pool; ssh2 is loaded only when an in-process connection is needed. */
async function processPool(): Promise<SshPool> {
  if (!pool) {
    const { SshPool } = await import('./pool.js')
    pool ??= new SshPool()
  }
  return pool
}

/**
 * Opens a session on `target`: through the connection agent when it runs (or
 * can be started), so a warm target costs no login; otherwise on this
 * process's pool. Connection errors surface here: exit 7 for unreachable
 * hosts, refused keys and changed host keys.
 */
export async function openSession(target: SshTarget, options: OpenSessionOptions = {}): Promise<SshSession> {
  if (options.useAgent ?? !agentDisabled()) {
    const idleTimeoutMs = async () => options.agentIdleTimeoutMs ?? defaultAgentIdleTimeout()
    if (options.connectWithExec) {
      const socket = await reachAgent({ idleTimeoutMs })
      if (socket) return connectingSession(target, socket, idleTimeoutMs, options)
      options.progress?.info('crabbox agent unavailable; connecting from this process')
      return inProcess(target, options)
    }
    const port = await connectThroughAgent(target, idleTimeoutMs, options.connectTimeoutMs)
    if (port !== undefined) {
      // This process's own connection, opened only if needed: interactive shells (not
      // latency-bound) and execs at a moment the agent cannot be reached.
      let own: Promise<SshSession> | undefined
      const ownSession = () => (own ??= inProcess(target, options))
      return {
        port,
        async exec(command: string, execOptions: ExecOptions = {}) {
          // Before the first await: a child's stdout left unread while we reach the agent can be lost.
          const held = holdStdin(execOptions.stdin)
          const options = { ...execOptions, stdin: held.stdin }
          try {
            const socket = await reachAgent({ idleTimeoutMs })
            if (!socket) return await (await ownSession()).exec(command, options)
            return await agentExec(socket, target, command, options)
          } finally {
            held.release()
          }
        },
        shell: async (shellOptions: ShellOptions = {}) => (await ownSession()).shell(shellOptions),
        async close() {
          await (await own?.catch(() => undefined))?.close()
        },
      }
    }
    options.progress?.info('crabbox agent unavailable; connecting from this process')
  }
  return inProcess(target, options)
}

/**
 * `connectWithExec`: a session whose execs each go to the agent as one `connect-exec` request,
 * the first on `socket` (already reached). As with `connect`: an agent lost before it connected
 * is asked once more, a wedged or missing one leaves the command to this process's own
 * connection, and an agent of an older crabbox gets `connect`, then `exec`.
 */
function connectingSession(
  target: SshTarget,
  socket: Socket,
  idleTimeoutMs: () => Promise<number>,
  options: OpenSessionOptions,
): SshSession {
  let first: Socket | undefined = socket
  let own: Promise<SshSession> | undefined
  const ownSession = () => (own ??= inProcess(target, options))
  const limitMs = (options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) * candidatePorts(target).length + 5000
  const session: SshSession = {
    port: undefined,
    async exec(command: string, execOptions: ExecOptions = {}) {
      // Before the first await: a child's stdout left unread while we reach the agent can be lost.
      const held = holdStdin(execOptions.stdin)
      const execWith = { ...execOptions, stdin: held.stdin }
      try {
        for (let attempt = 0; attempt < 2; attempt++) {
          const agent = first ?? (await reachAgent({ idleTimeoutMs }))
          first = undefined
          if (!agent) break
          try {
            const connect = { connectTimeoutMs: options.connectTimeoutMs, limitMs, onConnected: (port: number) => (session.port = port) }
            return await agentExec(agent, target, command, execWith, connect)
          } catch (error) {
            if (error instanceof AgentOutdated) {
              const port = await connectThroughAgent(target, idleTimeoutMs, options.connectTimeoutMs)
              const again = port === undefined ? undefined : await reachAgent({ idleTimeoutMs })
              if (!again) break
              session.port = port
              return await agentExec(again, target, command, execWith)
            }
            if (error instanceof AgentUnresponsive) break
            if (!(error instanceof AgentLost)) throw error
          }
        }
        options.progress?.info('crabbox agent unavailable; connecting from this process')
        return await (await ownSession()).exec(command, execWith)
      } finally {
        held.release()
      }
    },
    shell: async (shellOptions: ShellOptions = {}) => (await ownSession()).shell(shellOptions),
    async close() {
      first?.destroy()
      first = undefined
      await (await own?.catch(() => undefined))?.close()
    },
  }
  return session
}

/** Asks the agent (starting it if needed) to connect; undefined when no agent can serve us. */
async function connectThroughAgent(
  target: SshTarget,
  idleTimeoutMs: () => Promise<number>,
  connectTimeoutMs?: number,
): Promise<number | undefined> {
  // Two tries: an agent that was just exiting on idle drops the first request unanswered.
  for (let attempt = 0; attempt < 2; attempt++) {
    const socket = await reachAgent({ idleTimeoutMs })
    if (!socket) return undefined
    // The agent's own connect is bounded per port; past that (and a margin) it is wedged.
    const limit = (connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) * candidatePorts(target).length + 5000
    try {
      return (await agentRequest(socket, { op: 'connect', target, connectTimeoutMs }, limit)).port
    } catch (error) {
      if (error instanceof AgentUnresponsive) return undefined
      if (!(error instanceof AgentLost)) throw error
    }
  }
  return undefined
}

/** TCP streams to addresses seen from the runner (ssh `direct-tcpip`), over this process's pooled connection. */
export interface SshTunnel {
  /** A stream to `host:port` as the runner sees it (e.g. its loopback VNC); one channel per call. */
  forward(host: string, port: number): Promise<Duplex>
  close(): Promise<void>
}

/**
 * Opens (or reuses) this process's pooled connection to `target` for port
 * forwards; the connection stays while the tunnel is open.
 */
export async function openTunnel(target: SshTarget, options: Pick<OpenSessionOptions, 'connectTimeoutMs'> = {}): Promise<SshTunnel> {
  const shared = await processPool()
  await shared.connection(target, { connectTimeoutMs: options.connectTimeoutMs })
  shared.retain(target)
  let closed = false
  return {
    async forward(host, port) {
      const live = await shared.connection(target, { connectTimeoutMs: options.connectTimeoutMs })
      return new Promise<Duplex>((resolve, reject) =>
        live.client.forwardOut('127.0.0.1', 0, host, port, (error, channel) => (error ? reject(error) : resolve(channel))),
      )
    },
    async close() {
      if (closed) return
      closed = true
      await shared.release(target)
    },
  }
}

async function inProcess(target: SshTarget, options: OpenSessionOptions): Promise<SshSession> {
  const shared = await processPool()
  const live = await shared.connection(target, { connectTimeoutMs: options.connectTimeoutMs })
  shared.retain(target)
  let closed = false
  return {
    port: live.port,
    exec: (command: string, execOptions?: ExecOptions) => shared.exec(target, command, execOptions),
    shell: (shellOptions: ShellOptions = {}) => shared.shell(target, shellOptions),
    async close() {
      if (closed) return
      closed = true
      await shared.release(target)
    },
  }
}
