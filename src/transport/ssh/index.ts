import type { Progress } from '../../ui/progress.js'
import { agentDisabled, agentExec, agentRequest, reachAgent } from './agent-client.js'
import type { SshPool } from './pool.js'
import type { ExecOptions, ShellOptions, SshSession, SshTarget } from './types.js'

export type { ExecOptions, ExecResult, ShellOptions, ShellSession, SshSession, SshTarget } from './types.js'
export { ensureLeaseKey, type LeaseKey } from '../../services/keys.js'
export { waitForReady, type ReadyKind, type WaitForReadyOptions } from '../../services/readiness.js'
export { shellQuote } from './exec.js'

export interface OpenSessionOptions {
  progress?: Progress
  /** Route execs through the per-user connection agent (default: yes, unless CRABBOX_NO_AGENT=1). */
  useAgent?: boolean
  connectTimeoutMs?: number
  /** How long a started agent keeps an unused connection (config `agent.idleTimeout`); default 10 min. */
  agentIdleTimeoutMs?: number
}

export const DEFAULT_AGENT_IDLE_TIMEOUT_MS = 600_000

let pool: SshPool | undefined
/** The process-wide pool; ssh2 is loaded only when an in-process connection is needed. */
export async function processPool(): Promise<SshPool> {
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
    const idleTimeoutMs = options.agentIdleTimeoutMs ?? DEFAULT_AGENT_IDLE_TIMEOUT_MS
    const socket = await reachAgent({ idleTimeoutMs })
    if (socket) {
      const { port } = await agentRequest(socket, { op: 'connect', target, connectTimeoutMs: options.connectTimeoutMs })
      return {
        port,
        async exec(command: string, execOptions?: ExecOptions) {
          const execSocket = await reachAgent({ idleTimeoutMs })
          if (!execSocket) return (await processPool()).exec(target, command, execOptions)
          return agentExec(execSocket, target, command, execOptions)
        },
        // Interactive shells are not latency-bound: they use this process's own connection.
        async shell(shellOptions: ShellOptions = {}) {
          const own = await inProcess(target, options)
          try {
            const shell = await own.shell(shellOptions)
            void shell.done.finally(() => own.close()).catch(() => {})
            return shell
          } catch (error) {
            await own.close()
            throw error
          }
        },
        async close() {},
      }
    }
    options.progress?.info('crabbox agent unavailable; connecting from this process')
  }
  return inProcess(target, options)
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
