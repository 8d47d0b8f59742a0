import { CrabboxError } from '../../errors.js'
import type { Lease } from '../../providers/types.js'
import type { SshSession } from '../../transport/ssh/types.js'
import type { Progress } from '../../ui/progress.js'
import type { LeaseBackend } from '../lease.js'
import { waitForReady } from '../../transport/ssh/readiness.js'
import type { Recorder } from './recorder.js'

const BOOTSTRAP_TIMEOUT_MS = 20 * 60_000
const LOCAL_TIMEOUT_MS = 60_000

/** Waits for the runner's SSH and readiness check; the lease then uses the port that answered. */
export async function waitReady(lease: Lease, kind: 'managed' | 'static', progress: Progress, timeoutMs?: number): Promise<void> {
  progress.phase(`waiting for SSH on ${lease.ssh.host}:${lease.ssh.port}`)
  lease.ssh = await waitForReady(lease.ssh, kind, {
    timeoutMs: timeoutMs ?? (lease.provider === 'local' ? LOCAL_TIMEOUT_MS : BOOTSTRAP_TIMEOUT_MS),
    progress,
  })
}

export const interruptedError = () => new CrabboxError('interrupted', { exit: 130, code: 'interrupted' })

export interface LeaseInHand {
  lease: Lease
  /** True when this invocation created the lease (and so releases it unless kept). */
  acquired: boolean
}

/**
 * Ctrl-C and SIGTERM abort the run: the remote command is signalled, the run
 * recorded as interrupted and the lease released. A second Ctrl-C exits at once.
 * A closed stdout (`crabbox run -- yes | head`) stops the command the same way
 * (sshd's sessions ignore SIGPIPE); the run then exits 141, as if killed by SIGPIPE.
 */
export function interruptOnSignals(): { signal: AbortSignal; exitCode(): number; dispose(): void } {
  const controller = new AbortController()
  let brokenPipe = false
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130)
    controller.abort(name === 'SIGINT' ? 'SIGINT' : 'SIGTERM')
  }
  const onOutputError = (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE' || controller.signal.aborted) return
    brokenPipe = true
    controller.abort('SIGTERM')
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.stdout.on('error', onOutputError)
  return {
    signal: controller.signal,
    exitCode: () => (brokenPipe ? 141 : 130),
    dispose() {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      process.stdout.off('error', onOutputError)
    },
  }
}

const bootstrapTimedOut = (error: unknown) => error instanceof CrabboxError && error.exitCode === 5 && /timed out/i.test(error.message)

/**
 * Gets a ready lease: reuses `--id` as is, or acquires a fresh one and waits
 * for SSH. A fresh, non-kept lease whose runner never came up is released and
 * replaced once; any failure after a lease exists releases it before rethrowing.
 */
export async function obtainLease(
  backend: LeaseBackend,
  options: {
    id?: string
    keep: boolean
    signal: AbortSignal
    progress: Progress
    recorder: Recorder
    /** How long a fresh runner gets to answer SSH (default: the provider's bootstrap budget). */
    readyTimeoutMs?: number
    /** Called as soon as a lease exists, before its runner is ready (heartbeats start here). */
    onLease?: (lease: Lease) => void | Promise<void>
  },
): Promise<LeaseInHand> {
  const { progress, recorder, signal } = options
  recorder.event({ type: 'leasing.started', phase: 'leasing' })
  if (options.id) {
    const lease = await backend.resolve(options.id)
    announce(lease, recorder)
    await options.onLease?.(lease)
    return { lease, acquired: false }
  }
  for (let attempt = 1; ; attempt++) {
    progress.phase(`leasing a ${backend.provider} runner`)
    const lease = await backend.acquire({ keep: options.keep })
    announce(lease, recorder)
    await options.onLease?.(lease)
    try {
      if (signal.aborted) throw interruptedError()
      recorder.event({ type: 'bootstrap.waiting', phase: 'bootstrap', message: 'waiting for SSH before sync' })
      await waitReady(lease, backend.readiness(lease), progress, options.readyTimeoutMs)
      if (signal.aborted) throw interruptedError()
      progress.done(`leased ${lease.id} (${lease.slug}, ${lease.provider}${lease.keep ? ', kept' : ''})`)
      return { lease, acquired: true }
    } catch (error) {
      progress.fail()
      await releaseQuietly(backend, lease, progress, recorder)
      if (attempt === 1 && !options.keep && bootstrapTimedOut(error) && !signal.aborted) {
        progress.warn(`runner ${lease.id} never reached SSH; retrying once on a new machine`)
        continue
      }
      throw error
    }
  }
}

function announce(lease: Lease, recorder: Recorder): void {
  recorder.event({
    type: 'lease.created',
    phase: 'leased',
    leaseID: lease.id,
    slug: lease.slug,
    provider: lease.provider,
    serverType: lease.serverType,
  })
}

/** Release that never masks the run's own outcome: a failure is a warning (the broker expires the lease). */
export async function releaseQuietly(backend: LeaseBackend, lease: Lease, progress: Progress, recorder: Recorder): Promise<void> {
  try {
    // A phase still open here is the one that failed: it stays as a `✗` line above the release.
    progress.fail()
    progress.phase(`releasing ${lease.slug}`)
    await backend.release(lease)
    recorder.event({ type: 'lease.released', phase: 'released', leaseID: lease.id })
    progress.done(`released ${lease.id} (${lease.slug})`)
  } catch (error) {
    progress.fail()
    progress.warn(`could not release ${lease.id}: ${(error as Error).message}; it expires at its idle timeout`)
  }
}

export async function closeQuietly(session: SshSession | undefined): Promise<void> {
  await session?.close().catch(() => {})
}
