import type { Config } from '../../../config/schema.js'
import { usageError } from '../../../errors.js'
import type { Progress } from '../../../ui/progress.js'
import type { SshSession } from '../../../transport/ssh/types.js'
import type { TestResultSummary } from '../../../protocol/runs.js'
import type { Writable } from 'node:stream'
import { leaseBackend, type LeaseBackend } from '../../lease.js'
import { claimingBackend, reclaimedWarning } from '../../claims.js'
import type { UnchangedCheck } from '../../sync/snapshot.js'
import type { RunLaneResolved } from '../../lane.js'
import { findRepoRoot } from '../../sync/manifest.js'
import { noHeartbeat, type Heartbeater } from '../../heartbeat.js'
import { noTelemetry, type TelemetrySampler } from '../telemetry.js'
import { interruptOnSignals, type LeaseInHand } from '../lifecycle.js'
import {
  brokerNotice,
  deferredRecorder,
  nullRecorder,
  startRecorder,
  type BrokerNotice,
  type DeferredRecorder,
  type Recorder,
} from '../recorder.js'
import { stopwatch } from '../timing.js'
import { startLocalCheck, type SyncOutcome } from './sync.js'

export interface RunFlags {
  id?: string
  keep: boolean
  noSync: boolean
  syncOnly: boolean
  shell: boolean
  checksum: boolean
  forceSyncLarge: boolean
  timingJson: boolean
  /** `--reclaim`: use a lease another checkout claimed, moving the claim here. */
  reclaim?: boolean
  /** `--json`: the result object owns stdout, so the command's stdout goes to stderr. */
  json?: boolean
  /** How long a fresh runner gets to answer SSH, in ms. */
  bootstrapTimeoutMs?: number
  /** `--debug`: diagnostics that are otherwise silent (telemetry failures). */
  debug?: (message: string) => void
  /** Told what a `--no-sync` run, or a warm run with nothing to sync, resolved just before its command runs (the fast path files an agent lane route). */
  beforeCommand?: (at: RunLaneResolved) => void
}

export interface RunContext {
  config: Config
  progress: Progress
  cwd: string
  /** The git root the config loader found (walking up for `.git`), saving a `git rev-parse`. */
  repoRoot?: string
}

/** What a run knows before it has a lease; fixed for the whole run. */
export interface RunPlan {
  context: RunContext
  argv: string[]
  flags: RunFlags
  repoRoot: string
  checksum: boolean
  /** Sync's local unchanged check, started early (reused leases only). */
  localCheck?: Promise<UnchangedCheck>
  backend: LeaseBackend
  interrupt: ReturnType<typeof interruptOnSignals>
  notice: BrokerNotice
  recorder: Recorder | DeferredRecorder
  /** Time since the run started. */
  total: () => number
}

/** What the run holds while it goes, for the failure path and the release. */
export interface RunState {
  held?: LeaseInHand
  session?: SshSession
  heartbeat: Heartbeater
  /** Runner telemetry while the connection is open (broker runs on Linux runners). */
  telemetry: TelemetrySampler
  sync: SyncOutcome
  commandMs: number
  /** Output sinks not yet drained. */
  sinks: Writable[]
  /** The JUnit results the record step read (for the CI job summary). */
  results?: TestResultSummary
}

export const newRunState = (): RunState => ({
  heartbeat: noHeartbeat,
  telemetry: noTelemetry,
  sync: { skipped: true, phases: [], ms: 0 },
  commandMs: 0,
  sinks: [],
})

/**
 * Everything before the lease: the command is checked, the checkout found,
 * sync's local check started (it overlaps resolving the lease and opening the
 * connection), Ctrl-C handling installed and the run recorded on the broker.
 */
export async function planStep(context: RunContext, argv: string[], flags: RunFlags): Promise<RunPlan> {
  const { config, progress } = context
  if (argv.length === 0 && !flags.syncOnly) throw usageError('no command given', 'put the command after --, e.g. `crabbox run -- npm test`')
  const total = stopwatch()
  const repoRoot = context.repoRoot ?? (await findRepoRoot(context.cwd))
  const checksum = flags.checksum || config.sync.checksum
  const localCheck = flags.noSync || flags.id === undefined ? undefined : startLocalCheck(repoRoot, config.sync, checksum)
  localCheck?.catch(() => {})
  // The lease is claimed for this checkout as soon as it is resolved or acquired, before anything touches it.
  const backend = claimingBackend(await leaseBackend(context), {
    repoRoot,
    reclaim: flags.reclaim ?? false,
    onReclaim: (from, lease) => progress.warn(reclaimedWarning(lease, from)),
  })
  const interrupt = interruptOnSignals()
  const notice = brokerNotice(progress)
  const broker = backend.broker
  // The run is recorded once it has a lease (the lease step begins it): failures before that leave no record.
  const recorder: Recorder | DeferredRecorder = broker
    ? deferredRecorder((lease) =>
        startRecorder(
          broker,
          {
            leaseID: lease.id,
            provider: lease.provider,
            target: config.target,
            class: config.class,
            serverType: config.serverType,
            command: argv,
          } as Parameters<typeof startRecorder>[1],
          progress,
          notice,
        ),
      )
    : nullRecorder
  return { context, argv, flags, repoRoot, checksum, localCheck, backend, interrupt, notice, recorder, total }
}
