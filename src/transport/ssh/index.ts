import type { Progress } from '../../ui/progress.js'
import { SshPool } from './pool.js'
import type { ExecOptions, ShellOptions, SshSession, SshTarget } from './types.js'

export type { ExecOptions, ExecResult, ShellOptions, ShellSession, SshSession, SshTarget } from './types.js'
export { ensureLeaseKey, type LeaseKey } from '../../services/keys.js'
export { shellQuote } from './exec.js'

export interface OpenSessionOptions {
  progress?: Progress
  /** Route through the per-user connection agent (default: yes unless CRABBOX_NO_AGENT=1). */
  useAgent?: boolean
  connectTimeoutMs?: number
}

/** The process-wide pool: every session on one target shares one connection. */
export const processPool = new SshPool()

/**
 * Opens (or joins) the pooled connection to `target`. Connection errors surface
 * here: exit 7 for unreachable hosts, refused keys and changed host keys.
 */
export async function openSession(target: SshTarget, options: OpenSessionOptions = {}): Promise<SshSession> {
  const pool = processPool
  const live = await pool.connection(target, { connectTimeoutMs: options.connectTimeoutMs })
  pool.retain(target)
  let closed = false
  return {
    port: live.port,
    exec: (command: string, execOptions?: ExecOptions) => pool.exec(target, command, execOptions),
    shell: (shellOptions: ShellOptions = {}) => pool.shell(target, shellOptions),
    async close() {
      if (closed) return
      closed = true
      await pool.release(target)
    },
  }
}
