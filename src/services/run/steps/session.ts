import type { Writable } from 'node:stream'
import type { Lease } from '../../../providers/types.js'
import { openSession } from '../../../transport/ssh/index.js'
import type { SshSession } from '../../../transport/ssh/types.js'
import { heartbeatIntervalMs } from '../../heartbeat.js'
import { interruptedError } from '../lifecycle.js'
import { runOutputSink } from '../output.js'
import { interruptGroup, remoteCommandFor, runPidFile, type RemoteCommand } from '../remote-command.js'
import { sampleTelemetry, startTelemetry } from '../telemetry.js'
import type { RunPlan, RunState } from './plan.js'
import { workdirFor } from '../workdir.js'
import { readHydration } from '../../actions/record.js'
import { windowsRunCommand, windowsWorkdir } from '../../windows/command.js'
import { wslSession } from '../../windows/wsl-session.js'
import { forwardedEnv } from '../remote-command.js'
import { runningOnLine } from '../../../ui/format.js'

export { workdirFor }

/** When a run's first telemetry sample is taken (then every heartbeat interval). */
const FIRST_SAMPLE_AFTER_MS = 1000

/** The open connection and everything the command needs on it. */
export interface LiveRun {
  lease: Lease
  workdir: string
  session: SshSession
  /** Undefined with --sync-only. */
  remote?: RemoteCommand
  /** A native Windows runner: `remote` carries its folder and environment; the sync is Windows' own. */
  windowsNative?: boolean
  stdout: Writable
  stderr: Writable
  /** The same sinks as callbacks, for the warm run's guard (it inspects the first bytes). */
  output: { onStdout: (chunk: Buffer) => void; onStderr: (chunk: Buffer) => void }
  /** Records and says that the command starts. */
  commandStarts: () => void
  /** Signals the remote process group over a second channel (listening on Ctrl-C while the command may run). */
  outOfBand: () => void
}

/**
 * Opens the SSH session and prepares the remote command: its pid file, the
 * out-of-band Ctrl-C, and output sinks with backpressure (a slow local
 * reader holds the remote back).
 */
export async function sessionStep(plan: RunPlan, state: RunState, lease: Lease): Promise<LiveRun> {
  const { argv, flags, interrupt, recorder } = plan
  const { progress } = plan.context
  // A lease hydrated by `actions hydrate`: the Actions job's workspace and environment.
  const hydrated = readHydration(lease.id)
  const windowsNative = lease.windows?.mode === 'normal'
  const workdir =
    hydrated?.workspace ??
    (windowsNative ? windowsWorkdir(lease.workRoot, lease.id, plan.repoRoot) : workdirFor(lease.workRoot, lease.id, plan.repoRoot))
  // A lease named by --id is usually warm in the agent: it connects with the first exec, one
  // request instead of two (a connection error then comes from that exec, same message and exit).
  const opened = await openSession(lease.ssh, { progress, connectWithExec: flags.id !== undefined })
  // WSL2: every exec goes through wsl.exe, and the Linux sync and command line work as they are.
  const session = lease.windows?.mode === 'wsl2' ? wslSession(opened) : opened
  state.session = session
  if (interrupt.signal.aborted) throw interruptedError(interrupt.signal)
  // Broker runs on Linux runners sample load, memory and disk on the heartbeat cadence (its own SSH channel).
  // Not at once: the command goes first, on the connection's ready channel (a sample taking it
  // cost the command a channel-open round trip), and a short command needs no sample at all.
  if (plan.backend.broker && plan.context.config.target === 'linux') {
    state.telemetry = startTelemetry(
      () => sampleTelemetry(session, lease.workRoot),
      (sample) => recorder.telemetry(sample),
      heartbeatIntervalMs(lease.idleTimeoutSeconds),
      flags.debug,
      FIRST_SAMPLE_AFTER_MS,
    )
  }

  // Ctrl-C also signals the remote group over a second channel: some servers
  // ignore SSH signal requests, and a stuck command must not hold the run open.
  const pidFile = runPidFile(lease.id)
  const remote = flags.syncOnly
    ? undefined
    : windowsNative
      ? windowsRunCommand(argv, {
          workdir,
          env: forwardedEnv(plan.context.config.env.allow),
          shell: flags.shell,
          makeWorkdir: flags.noSync,
        })
      : remoteCommandFor(argv, { shell: flags.shell, pidFile, envFile: hydrated?.envFile })
  const outOfBand = () => {
    // Windows has no process group to signal: closing the channel (the exec's abort) is what ends the run there.
    if (!windowsNative) interruptGroup((command) => session.exec(command), pidFile)
  }
  // Under --json the result object is the only thing on stdout: the command's stdout goes to stderr.
  const stdout = runOutputSink(flags.json ? process.stderr : process.stdout, 'stdout', recorder, () => interrupt.signal.aborted)
  const stderr = runOutputSink(process.stderr, 'stderr', recorder, () => false)
  state.sinks = [stdout, stderr]
  const commandStarts = () => {
    recorder.event({ type: 'command.started', phase: 'command', message: argv.join(' ') })
    progress.done()
    if (!flags.timingJson) progress.detail(runningOnLine(lease, argv))
  }
  if (remote) interrupt.signal.addEventListener('abort', outOfBand, { once: true })
  return {
    lease,
    workdir,
    session,
    remote,
    ...(windowsNative && { windowsNative }),
    stdout,
    stderr,
    output: { onStdout: (chunk) => void stdout.write(chunk), onStderr: (chunk) => void stderr.write(chunk) },
    commandStarts,
    outOfBand,
  }
}
