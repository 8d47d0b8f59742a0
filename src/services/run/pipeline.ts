import { randomBytes } from 'node:crypto'
import { basename } from 'node:path'
import { constants } from 'node:os'
import type { Writable } from 'node:stream'
import type { Config } from '../../config/schema.js'
import { CrabboxError, usageError } from '../../errors.js'
import { openSession } from '../../transport/ssh/index.js'
import { shellQuote } from '../../transport/ssh/exec.js'
import type { ExecResult, SshSession } from '../../transport/ssh/types.js'
import type { Progress } from '../../ui/progress.js'
import { findRepoRoot } from '../sync/manifest.js'
import { leaseBackend } from '../lease.js'
import { directProvider } from '../../providers/registry.js'
import { noHeartbeat, startDirectTouch, type Heartbeater } from '../heartbeat.js'
import { closeQuietly, interruptedError, interruptOnSignals, obtainLease, releaseQuietly, type LeaseInHand } from './lifecycle.js'
import { brokerNotice, nullRecorder, startRecorder, type Recorder } from './recorder.js'
import { drained, runOutputSink } from './output.js'
import { forwardedEnv, remoteCommandFor, signalGroupCommand } from './remote-command.js'
import { startLocalCheck, syncStep, type SyncOutcome } from './steps.js'
import { formatMs, summaryLine } from '../../ui/format.js'
import { stopwatch, type RunTiming } from './timing.js'

export interface RunFlags {
  id?: string
  keep: boolean
  noSync: boolean
  syncOnly: boolean
  shell: boolean
  checksum: boolean
  forceSyncLarge: boolean
  timingJson: boolean
  /** How long a fresh runner gets to answer SSH, in ms. */
  bootstrapTimeoutMs?: number
}

export interface RunContext {
  config: Config
  progress: Progress
  cwd: string
  /** The git root the config loader found (walking up for `.git`), saving a `git rev-parse`. */
  repoRoot?: string
}

/** `<workRoot>/<leaseID>/<repoName>` (reference §3 item 7). */
export const workdirFor = (workRoot: string, leaseId: string, repoRoot: string) => `${workRoot.replace(/\/+$/, '')}/${leaseId}/${basename(repoRoot)}`

/** Exit status of a command that died by a signal, the way a shell reports it. */
function exitCodeOf(code: number | null, signal: string | undefined): number {
  if (code !== null) return code
  const number = signal ? constants.signals[(signal.startsWith('SIG') ? signal : `SIG${signal}`) as NodeJS.Signals] : undefined
  return number ? 128 + number : 255
}

/**
 * `crabbox run`: plan → lease → wait for SSH → sync → run (remote stdout and
 * stderr straight to ours) → finish → release unless kept. Resolves with the
 * timing; the caller exits with `exitCode`.
 */
export async function runPipeline(context: RunContext, argv: string[], flags: RunFlags): Promise<RunTiming> {
  const { config, progress } = context
  if (argv.length === 0 && !flags.syncOnly) throw usageError('no command given', 'put the command after --, e.g. `crabbox run -- npm test`')
  const total = stopwatch()
  const repoRoot = context.repoRoot ?? (await findRepoRoot(context.cwd))
  const checksum = flags.checksum || config.sync.checksum
  // Overlaps resolving the lease and opening the connection.
  const localCheck = flags.noSync || flags.id === undefined ? undefined : startLocalCheck(repoRoot, config.sync, checksum)
  localCheck?.catch(() => {})
  const backend = await leaseBackend(context)
  const interrupt = interruptOnSignals()
  const notice = brokerNotice(progress)
  const recorder: Recorder = backend.broker
    ? await startRecorder(
        backend.broker,
        { leaseID: '', provider: backend.provider, target: config.target, class: config.class, serverType: config.serverType, command: argv } as Parameters<typeof startRecorder>[1],
        progress,
        notice,
      )
    : nullRecorder

  let held: LeaseInHand | undefined
  let session: SshSession | undefined
  let heartbeat: Heartbeater = noHeartbeat
  let sync: SyncOutcome = { skipped: true, phases: [], ms: 0 }
  let commandMs = 0
  let sinks: Writable[] = []
  try {
    const broker = backend.broker
    held = await obtainLease(backend, {
      id: flags.id,
      keep: flags.keep,
      signal: interrupt.signal,
      progress,
      recorder,
      readyTimeoutMs: flags.bootstrapTimeoutMs,
      // Beat from the moment the lease exists, while the runner boots; a replaced runner's beat stops.
      onLease: broker
        ? async (lease) => {
            // The control channel (WebSocket client) is ~100 ms to load: only broker runs need it.
            const { startHeartbeat } = await import('../heartbeat.js')
            heartbeat.stop()
            heartbeat = startHeartbeat(broker, lease, notice)
          }
        : async (lease) => {
            // Direct cloud leases: refresh the expiry labels on the same cadence.
            heartbeat.stop()
            heartbeat = startDirectTouch(await directProvider(lease.provider), lease, context)
          },
    })
    const { lease } = held
    const workdir = workdirFor(lease.workRoot, lease.id, repoRoot)
    session = await openSession(lease.ssh, { progress })
    if (interrupt.signal.aborted) throw interruptedError()

    // Ctrl-C also signals the remote group over a second channel: some servers
    // ignore SSH signal requests, and a stuck command must not hold the run open.
    const pidFile = `/tmp/crabbox-${lease.id}-${randomBytes(4).toString('hex')}.pid`
    const remote = flags.syncOnly ? undefined : remoteCommandFor(argv, { shell: flags.shell, pidFile })
    const liveSession = session
    const outOfBand = () => {
      void liveSession.exec(signalGroupCommand(pidFile, 'INT')).catch(() => {})
      setTimeout(() => void liveSession.exec(signalGroupCommand(pidFile, 'KILL')).catch(() => {}), 3000).unref()
    }
    // Output goes through sinks with backpressure (a slow local reader holds the remote back).
    const stdout = runOutputSink(process.stdout, 'stdout', recorder, () => interrupt.signal.aborted)
    const stderr = runOutputSink(process.stderr, 'stderr', recorder, () => false)
    sinks = [stdout, stderr]
    // The warm run's guard takes callbacks (it inspects the first bytes); they feed the same sinks.
    const output = { onStdout: (chunk: Buffer) => void stdout.write(chunk), onStderr: (chunk: Buffer) => void stderr.write(chunk) }
    const commandStarts = () => {
      recorder.event({ type: 'command.started', phase: 'command', message: argv.join(' ') })
      progress.done()
      if (!flags.timingJson) progress.info(`running on ${lease.slug} (${lease.ssh.host}) ${argv.join(' ')}`)
    }
    if (remote) interrupt.signal.addEventListener('abort', outOfBand, { once: true })
    let ran: { result: ExecResult; ms: number } | undefined

    if (flags.noSync) {
      recorder.event({ type: 'sync.finished', phase: 'synced', message: 'skipped by --no-sync' })
    } else {
      recorder.event({ type: 'sync.started', phase: 'sync' })
      progress.phase(`syncing ${repoRoot} to ${workdir}`)
      sync = await syncStep({
        repoRoot,
        workdir,
        config: config.sync,
        session,
        progress,
        checksum,
        check: localCheck,
        forceLarge: flags.forceSyncLarge || config.sync.allowLarge,
        signal: interrupt.signal,
        // A reused lease most likely holds this checkout already: check and run in one exec.
        thenRun:
          remote && flags.id
            ? {
                command: remote.command,
                env: forwardedEnv(config.env.allow),
                signal: interrupt.signal,
                ...output,
                onStart: () => {
                  recorder.event({ type: 'sync.finished', phase: 'synced', message: 'skipped=true (fingerprint checked in the command exec)' })
                  commandStarts()
                },
              }
            : undefined,
      })
      if (!sync.ran) recorder.event({ type: 'sync.finished', phase: 'synced', message: `duration=${formatMs(sync.ms)} skipped=${sync.skipped}` })
      ran = sync.ran
    }
    if (interrupt.signal.aborted && !ran) throw interruptedError()

    let exitCode = 0
    if (!remote) {
      progress.info(`synced ${workdir}`)
    } else {
      if (!ran) {
        commandStarts()
        const clock = stopwatch()
        // --no-sync: nothing created the workdir yet, so the same exec makes it (one round trip).
        const prefix = flags.noSync ? `mkdir -p ${shellQuote(workdir)} && cd ${shellQuote(workdir)} && ` : ''
        const result = await session.exec(prefix + remote.command, {
          cwd: flags.noSync ? undefined : workdir,
          env: forwardedEnv(config.env.allow),
          signal: interrupt.signal,
          stdout,
          stderr,
        })
        ran = { result, ms: clock() }
      }
      interrupt.signal.removeEventListener('abort', outOfBand)
      commandMs = ran.ms
      exitCode = interrupt.signal.aborted ? interrupt.exitCode() : exitCodeOf(ran.result.code, ran.result.signal)
    }
    // Everything the command printed reaches our streams and the recorder before the run is finished.
    await Promise.all(sinks.splice(0).map(drained))
    if (interrupt.signal.aborted) {
      recorder.event({ type: 'run.failed', phase: 'failed', message: 'interrupted' })
      exitCode = interrupt.exitCode()
    }
    await recorder.finish({ exitCode, syncMs: sync.ms, commandMs })
    const timing: RunTiming = {
      provider: lease.provider,
      leaseId: lease.id,
      slug: lease.slug,
      ...(recorder.runId ? { runId: recorder.runId } : {}),
      syncMs: sync.ms,
      syncPhases: sync.phases,
      syncSkipped: flags.noSync || sync.skipped,
      commandMs,
      totalMs: total(),
      exitCode,
    }
    return timing
  } catch (error) {
    const exitCode = error instanceof CrabboxError ? error.exitCode : 1
    await Promise.all(sinks.splice(0).map(drained))
    recorder.event({ type: 'run.failed', phase: 'failed', message: interrupt.signal.aborted ? 'interrupted' : (error as Error).message })
    await recorder.finish({ exitCode, syncMs: sync.ms, commandMs })
    throw error
  } finally {
    heartbeat.stop()
    await closeQuietly(session)
    if (held?.acquired && !flags.keep) await releaseQuietly(backend, held.lease, progress, recorder)
    else if (held?.acquired) progress.info(`kept ${held.lease.id} (${held.lease.slug}); reuse it with: crabbox run --id ${held.lease.slug} -- <command>; stop it with: crabbox stop ${held.lease.slug}`)
    await recorder.settle()
    interrupt.dispose()
  }
}

/** Prints the timing as `--timing-json` asks (one JSON line) or the human summary, both on stderr. */
export function reportTiming(timing: RunTiming, asJson: boolean): void {
  process.stderr.write(`${asJson ? JSON.stringify(timing) : summaryLine(timing)}\n`)
}
