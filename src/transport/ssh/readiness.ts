import { connect as connectTcp } from 'node:net'
import { CrabboxError } from '../../errors.js'
import type { Progress } from '../../ui/progress.js'
import type { SshTarget } from './types.js'

export type ReadyKind = 'managed' | 'static'

export interface WaitForReadyOptions {
  timeoutMs: number
  progress: Progress
  /** Passed on to openSession; the agent keeps the probe's connection warm for what follows. */
  useAgent?: boolean
  agentIdleTimeoutMs?: number
  /** Stops the wait (between probes) once aborted. */
  signal?: AbortSignal
  /**
   * Instead of the kind's POSIX check (Windows runners): the exec string, read the same
   * way (exit 0 and no output is ready; a static host prints the names of missing tools).
   */
  readyCommand?: string
  /** The tools a static host needs, for the hint when some are missing (default: sh, tar and git). */
  needs?: string
}

type Phase = 'TCP' | 'auth' | 'ready check'

// Managed runners say when bootstrap is done; static hosts only need the tools sync uses.
// A failure that waiting cannot fix (a failed Tailscale join or exit-node check) is printed, and ends the wait.
const TAILSCALE_FAILED = 'crabbox-ready: tailscale: '
const READY_CHECK: Record<ReadyKind, string> = {
  managed: `test -x /usr/local/bin/crabbox-ready && { /usr/local/bin/crabbox-ready >/tmp/crabbox-ready.log 2>&1 || { grep -h '^${TAILSCALE_FAILED}' /tmp/crabbox-ready.log; exit 1; }; }`,
  static: 'for tool in sh tar git; do command -v "$tool" >/dev/null 2>&1 || echo "$tool"; done',
}
const PROBE_TIMEOUT_MS = 5000

const final = (error: CrabboxError, kind: ReadyKind) =>
  error.code === 'host_key_changed' || error.code === 'ssh_key_unreadable' || (kind === 'static' && error.code === 'ssh_auth')

function tcpOpen(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectTcp({ host, port })
    const finish = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => finish(false))
    socket.once('connect', () => finish(true))
    socket.once('error', () => finish(false))
  })
}

/**
 * Waits until `target` answers SSH and passes its ready check, trying the
 * primary port then each fallback every round. Reports the phase reached
 * (TCP, auth, ready check) as progress; a timeout is exit 5 naming the host
 * and phase. Returns the target with the port that worked as primary.
 */
export async function waitForReady(target: SshTarget, kind: ReadyKind, options: WaitForReadyOptions): Promise<SshTarget> {
  const { openSession } = await import('./index.js')
  const { candidatePorts } = await import('./ports.js')
  const deadline = Date.now() + options.timeoutMs
  const ports = candidatePorts(target)
  let phase: Phase = 'TCP'
  let detail = ''
  let pause = 500
  for (;;) {
    for (const port of ports) {
      const left = deadline - Date.now()
      if (left <= 0 || options.signal?.aborted) break
      const at = `${target.host}:${port}`
      options.progress.phase(`waiting for SSH on ${at} (TCP)`)
      if (!(await tcpOpen(target.host, port, Math.min(PROBE_TIMEOUT_MS, left)))) {
        detail = `port ${port} not open`
        continue
      }
      if (phase === 'TCP') phase = 'auth'
      options.progress.phase(`waiting for SSH on ${at} (auth)`)
      const portTarget = { ...target, port, fallbackPorts: [] }
      let session
      try {
        session = await openSession(portTarget, {
          connectTimeoutMs: Math.min(PROBE_TIMEOUT_MS, Math.max(1, deadline - Date.now())),
          useAgent: options.useAgent,
          agentIdleTimeoutMs: options.agentIdleTimeoutMs,
        })
      } catch (error) {
        // A changed host key will not change back by waiting, nor will a host crabbox does not
        // provision start accepting a key it refused (a managed runner may still be writing it).
        if (error instanceof CrabboxError && final(error, kind)) throw error
        detail = (error as Error).message
        continue
      }
      phase = 'ready check'
      options.progress.phase(`waiting for SSH on ${at} (ready check)`)
      try {
        let missing = ''
        const result = await session.exec(options.readyCommand ?? READY_CHECK[kind], { onStdout: (chunk) => (missing += chunk.toString()) })
        if (result.code === 0 && missing.trim() === '') {
          if (port !== target.port) options.progress.info(`using ssh port ${port}`)
          return { ...target, port, fallbackPorts: ports.filter((p) => p !== port) }
        }
        const failed = kind === 'managed' ? missing.split('\n').find((line) => line.startsWith(TAILSCALE_FAILED)) : undefined
        if (failed)
          throw new CrabboxError(failed.slice('crabbox-ready: '.length).trim(), {
            exit: 'provisioning',
            code: 'runner_not_ready',
            hint: 'The runner could not join the tailnet as asked; check the exit node (tailscale status on your side) or drop --tailscale-exit-node.',
          })
        if (kind === 'static' && missing.trim()) {
          const tools = missing.trim().split(/\s+/).join(', ')
          throw new CrabboxError(`${target.host} is missing ${tools}`, {
            exit: 'provisioning',
            code: 'runner_not_ready',
            hint: `Install ${tools} on ${target.host}; crabbox needs ${options.needs ?? 'sh, tar and git'} there.`,
          })
        }
        detail = `ready check exited ${result.code ?? result.signal}`
      } catch (error) {
        if (error instanceof CrabboxError && error.code === 'runner_not_ready') throw error
        detail = (error as Error).message
      } finally {
        await session.close()
      }
    }
    if (Date.now() + pause >= deadline || options.signal?.aborted) break
    await new Promise((resolve) => setTimeout(resolve, pause))
    pause = Math.min(pause * 2, 5000)
  }
  throw new CrabboxError(`timed out waiting for SSH on ${target.host} during ${phase}${detail ? ` (${detail})` : ''}`, {
    exit: 'provisioning',
    code: 'ssh_timeout',
    hint: 'Check that the runner is up and reachable on one of its SSH ports, then retry (or raise the wait with a longer timeout).',
  })
}
