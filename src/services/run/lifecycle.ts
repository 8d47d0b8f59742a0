import type { Config } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import type { Lease } from '../../providers/types.js'
import type { SshSession } from '../../transport/ssh/types.js'
import type { Progress } from '../../ui/progress.js'
import { withArticle } from '../../ui/format.js'
import type { LeaseBackend } from '../lease.js'
import { reachLease } from '../network.js'
import { waitForReady } from '../../transport/ssh/readiness.js'
import { newLeaseId } from '../../protocol/ids.js'
import type { Recorder } from './recorder.js'

const BOOTSTRAP_TIMEOUT_MS = 20 * 60_000
const LOCAL_TIMEOUT_MS = 60_000
/** How often the provider is asked for the machine's state while the runner boots. */
const STATE_POLL_MS = 5_000

/** What a lease backend can read of a lease's state at the provider (`LeaseBackend.machineState`). */
type StateReader = (lease: Pick<Lease, 'id' | 'provider' | 'details'>) => Promise<string | undefined>

/**
 * Waits for the runner's SSH and readiness check; the lease then uses the port that answered.
 * With `machineState`, the provider's own state of the machine (`hetzner: starting`) is shown
 * beside the SSH step until the wait ends. An interrupt ends the wait at once.
 */
export async function waitReady(
  lease: Lease,
  kind: 'managed' | 'static',
  progress: Progress,
  timeoutMs?: number,
  signal?: AbortSignal,
  machineState?: StateReader,
): Promise<void> {
  // A delegated provider's own warmup already waited; crabbox never dials its machine.
  if (lease.details.delegated) return
  const watched = withState(progress, machineState && (() => machineState(lease)))
  try {
    watched.progress.phase(`waiting for SSH on ${lease.ssh.host}:${lease.ssh.port}`)
    const budget = {
      timeoutMs: timeoutMs ?? (lease.provider === 'local' ? LOCAL_TIMEOUT_MS : BOOTSTRAP_TIMEOUT_MS),
      progress: watched.progress,
      signal,
    }
    // Windows runners: their own checks, and the bootstrap over SSH on machines crabbox made.
    const waiting = lease.windows
      ? import('../windows/ready.js').then(({ waitWindowsReady }) => waitWindowsReady(lease, budget))
      : waitForReady(lease.ssh, kind, budget)
    lease.ssh = signal ? await unlessInterrupted(waiting, signal) : await waiting
  } finally {
    watched.stop()
  }
}

/**
 * `progress` whose phases carry ` · <state>` from `read`, called now and every STATE_POLL_MS after
 * its last answer (one request at a time, failures ignored, the last state kept) until `stop`.
 */
function withState(progress: Progress, read: (() => Promise<string | undefined>) | undefined): { progress: Progress; stop(): void } {
  if (!read) return { progress, stop() {} }
  let step: string | undefined
  let state: string | undefined
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  const show = () => step !== undefined && progress.phase(state ? `${step} · ${state}` : step)
  const tick = async () => {
    const next = await read().catch(() => undefined)
    if (stopped) return
    if (next && next !== state) {
      state = next
      show()
    }
    timer = setTimeout(() => void tick(), STATE_POLL_MS)
    timer.unref()
  }
  void tick()
  return {
    progress: {
      ...progress,
      phase(message) {
        step = message
        show()
      },
    },
    stop() {
      stopped = true
      clearTimeout(timer)
    },
  }
}

/** The abort reason of a closed stdout or stderr: the run then exits 141, as if killed by SIGPIPE. */
const CLOSED_PIPE = 'EPIPE'

/** The error of an interrupted run: exit 130 after a signal, 141 after a closed output. */
export const interruptedError = (signal?: AbortSignal) =>
  signal?.reason === CLOSED_PIPE
    ? new CrabboxError('output closed early', { exit: 141, code: 'interrupted' })
    : new CrabboxError('interrupted', { exit: 130, code: 'interrupted' })

/** Settles as `work` does, or rejects with the interrupt as soon as `signal` aborts (`work` is left to settle alone). */
export function unlessInterrupted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {})
    return Promise.reject(interruptedError(signal))
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(interruptedError(signal))
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

export interface LeaseInHand {
  lease: Lease
  /** True when this invocation created the lease (and so releases it unless kept). */
  acquired: boolean
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

/**
 * Ctrl-C, SIGTERM (a cancelled CI job) and SIGHUP (a closed terminal) abort the
 * run in every phase (leasing, waiting for SSH, syncing, the command): the remote
 * command is signalled, the run recorded as interrupted and the lease released.
 * A second signal exits at once. A closed stdout or stderr (`crabbox run -- yes |
 * head`, `… 2>&1 | head`) stops the run the same way (sshd's sessions ignore
 * SIGPIPE); the run then exits 141, as if killed by SIGPIPE.
 */
export function interruptOnSignals(): { signal: AbortSignal; exitCode(): number; dispose(): void } {
  const controller = new AbortController()
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(controller.signal.reason === CLOSED_PIPE ? 141 : 130)
    controller.abort(name)
  }
  const onOutputError = (stream: NodeJS.WriteStream) => (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') return
    // A closed stream stays closed: later writes (progress, the summary) must not crash the exit path.
    stream.write = (() => true) as typeof stream.write
    if (!controller.signal.aborted) controller.abort(CLOSED_PIPE)
  }
  for (const name of SIGNALS) process.on(name, onSignal)
  process.stdout.on('error', onOutputError(process.stdout))
  process.stderr.on('error', onOutputError(process.stderr))
  return {
    signal: controller.signal,
    exitCode: () => (controller.signal.reason === CLOSED_PIPE ? 141 : 130),
    dispose() {
      for (const name of SIGNALS) process.off(name, onSignal)
      // The output handlers stay: a closed pipe can still fail a write after the run.
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
    /** How to reach the runner (config `network`; services/network.ts); default public. */
    network?: Config['network']
  },
): Promise<LeaseInHand> {
  const { progress, recorder, signal } = options
  recorder.event({ type: 'leasing.started', phase: 'leasing' })
  const reach = (lease: Lease, afterReady: boolean) =>
    reachLease(lease, { config: { network: options.network ?? 'public' }, progress }, { broker: backend.broker, afterReady })
  if (options.id) {
    const lease = await reach(await backend.resolve(options.id), false)
    announce(lease, recorder)
    await options.onLease?.(lease)
    return { lease, acquired: false }
  }
  for (let attempt = 1; ; attempt++) {
    // A broker answers only once it has the machine; meanwhile the lease it reserved reads `provisioning`.
    const leaseId = newLeaseId()
    const watched = withState(
      progress,
      backend.mode === 'broker' && backend.machineState
        ? () => backend.machineState!({ id: leaseId, provider: backend.provider, details: {} })
        : undefined,
    )
    let lease: Lease
    try {
      watched.progress.phase(`leasing ${withArticle(backend.provider)} runner`)
      lease = await acquireUnlessInterrupted(backend, { keep: options.keep, leaseId }, signal, progress, recorder)
    } finally {
      watched.stop()
    }
    announce(lease, recorder)
    await options.onLease?.(lease)
    try {
      if (signal.aborted) throw interruptedError(signal)
      recorder.event({ type: 'bootstrap.waiting', phase: 'bootstrap', message: 'waiting for SSH before sync' })
      await waitReady(lease, backend.readiness(lease), progress, options.readyTimeoutMs, signal, backend.machineState)
      if (signal.aborted) throw interruptedError(signal)
      lease = await reach(lease, true)
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

/**
 * `backend.acquire`, ended at once by an interrupt. A lease the provider hands
 * out after that is released as soon as it arrives.
 */
async function acquireUnlessInterrupted(
  backend: LeaseBackend,
  request: { keep: boolean; leaseId: string },
  signal: AbortSignal,
  progress: Progress,
  recorder: Recorder,
): Promise<Lease> {
  const acquiring = backend.acquire(request)
  try {
    return await unlessInterrupted(acquiring, signal)
  } catch (error) {
    if (signal.aborted) {
      progress.warn('interrupted while leasing; releasing the lease as soon as the provider hands it out')
      const late = await acquiring.catch(() => undefined)
      if (late) await releaseQuietly(backend, late, progress, recorder)
    }
    throw error
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
