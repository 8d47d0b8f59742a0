import type { Config } from '../../../config/schema.js'
import { parseDuration } from '../../../config/schema.js'
import type { SshSession } from '../../../transport/ssh/types.js'
import type { Progress } from '../../../ui/progress.js'
import { SentManifests } from '../sent-records.js'
import type { WatchTaken } from '../snapshot.js'
import type { SyncOptions, SyncResult } from '../index.js'
import { formatBytes, NOTHING_TO_SYNC, plural } from '../../../ui/format.js'
import type { SyncPlan } from '../prune.js'
import { Timer } from '../timer.js'

/** What every step of one sync shares: its options, the timer, warnings and the sync's deadline. */
export interface SyncRun {
  options: SyncOptions
  config: Config['sync']
  session: SshSession
  progress: Progress
  env: NodeJS.ProcessEnv
  /** The caller's signal joined with sync.timeout. */
  signal: AbortSignal
  timer: Timer
  warnings: string[]
  /** Records a non-fatal problem and shows it as a progress warning. */
  warn(message: string): void
  /** Whether fingerprints are used at all (`--checksum` trusts nothing). */
  useFingerprint: boolean
  /** What this machine last sent, keyed by fingerprint. */
  sent: SentManifests
  /** The agent's watcher stamp taken before the check (set by the check step); the next snapshot may keep it. */
  watch?: Promise<WatchTaken | undefined>
}

export function beginSync(options: SyncOptions): SyncRun {
  const { config, progress } = options
  const timeout = AbortSignal.timeout(parseDuration(config.timeout))
  const warnings: string[] = []
  return {
    options,
    config,
    session: options.session,
    progress,
    env: options.env ?? process.env,
    signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
    timer: new Timer(),
    warnings,
    warn(message) {
      warnings.push(message)
      progress.warn(message)
    },
    useFingerprint: config.fingerprint && !options.checksum,
    sent: SentManifests.for(options.repoRoot),
  }
}

/** The phases a sync that sends nothing never runs. */
const SEND_PHASES = ['prune', 'transfer', 'git_seed', 'hydrate', 'finalize']

/** The runner already holds this checkout: nothing was sent. */
export function skippedResult(run: SyncRun, saved: Promise<void>): SyncResult {
  for (const name of SEND_PHASES) run.timer.skip(name, 'fingerprint matches')
  run.progress.done(NOTHING_TO_SYNC)
  return { skipped: true, filesSent: 0, bytesSent: 0, filesDeleted: 0, warnings: run.warnings, saved, ...run.timer.result() }
}

/** `saved`: the bookkeeping still being written (steps/remember.ts). */
export function syncedResult(run: SyncRun, plan: SyncPlan, saved: Promise<void>): SyncResult {
  const removed = plan.remove.length > 0 ? `, removed ${plan.remove.length}` : ''
  run.progress.done(`synced ${plural(plan.send.length, 'file')}, ${formatBytes(plan.sendBytes)}${removed}`)
  return {
    skipped: false,
    filesSent: plan.send.length,
    bytesSent: plan.sendBytes,
    filesDeleted: plan.remove.length,
    warnings: run.warnings,
    saved,
    ...run.timer.result(),
  }
}
