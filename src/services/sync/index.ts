import type { Config } from '../../config/schema.js'
import type { ExecResult, SshSession } from '../../transport/ssh/types.js'
import type { Progress } from '../../ui/progress.js'
import type { GuardedCommand, Probed } from './guard.js'
import type { UnchangedCheck } from './snapshot.js'
import { checkStep } from './steps/check.js'
import { beginSync, skippedResult, syncedResult } from './steps/context.js'
import { gitSeedStep } from './steps/git-seed.js'
import { hashStep, manifestStep } from './steps/manifest.js'
import { foldedSync } from './steps/fold.js'
import { planStep } from './steps/plan.js'
import { readRunner } from './steps/probe.js'
import { rememberSnapshot, rememberStep } from './steps/remember.js'
import { loadTransfer, sendStep } from './steps/send.js'
import type { SyncPhase } from './timer.js'

export { checkUnchanged, type UnchangedCheck } from './snapshot.js'
export { runIfUnchanged, type GuardedCommand, type Probed, type WarmRun } from './guard.js'
export type { SyncPhase } from './timer.js'

export { buildManifest, findRepoRoot, checkPath, type Manifest, type ManifestEntry } from './manifest.js'
export { DEFAULT_EXCLUDES } from './excludes.js'
export { summarizeManifest, syncPlan, type SyncPlanSummary } from './summary.js'

export interface SyncOptions {
  repoRoot: string
  /** Remote absolute path of the workdir. */
  workdir: string
  config: Config['sync']
  session: SshSession
  progress: Progress
  /** Ignore the local hash cache and the runner's record: rehash and resend everything. */
  checksum?: boolean
  forceLarge?: boolean
  /** For CRABBOX_ALLOW_MASS_DELETIONS, CRABBOX_SYNC_ALLOW_LARGE, CRABBOX_SYNC_COMPRESS. */
  env?: NodeJS.ProcessEnv
  signal?: AbortSignal
  /** The local unchanged check, when the caller started it early (checkUnchanged) to overlap other work. */
  check?: UnchangedCheck
  /** The runner already answered the probe (the warm-run guard found its fingerprint differs). */
  probed?: Probed
  /**
   * The caller already waited for `check` (the warm run did): after a small
   * change the folded apply is then the only exec, with no probe beside it.
   */
  checkAwaited?: boolean
  /**
   * The command to run after the sync (`run --id`): a small folded change
   * starts it beside the apply, and it runs on the runner once the apply
   * landed (SyncResult.ran). Its output only flows after that.
   */
  thenRun?: GuardedCommand
}

export interface SyncResult {
  skipped: boolean
  filesSent: number
  bytesSent: number
  filesDeleted: number
  phases: SyncPhase[]
  totalMs: number
  /** Non-fatal problems (git seed, size warnings), already shown as progress warnings. */
  warnings: string[]
  /**
   * The local bookkeeping for the next sync (hash cache, the record's copy,
   * snapshot and stored manifest), still being written when the sync returns
   * so it overlaps the command. Never rejects; await it before exiting.
   */
  saved: Promise<void>
  /** The command ran, pipelined with the apply (see SyncOptions.thenRun). */
  ran?: { result: ExecResult; ms: number }
}

/**
 * Puts the local checkout on the runner. Each step is its own module under
 * `steps/`: check (the local unchanged check, overlapped with the probe; an
 * unchanged checkout the runner already holds ends here) → manifest → probe
 * answer → plan (pure) → send or skip → git seed → remember. A change costs
 * two round trips: the probe, then one exec that prunes, extracts, commits
 * the runner's record, seeds git and writes the fingerprint; a small change
 * to a checkout the runner most likely holds folds the probe into that exec
 * (steps/fold.ts), one round trip. The local bookkeeping for the next sync
 * is written after the sync returns (`saved`), while the command runs.
 */
export async function syncWorkdir(options: SyncOptions): Promise<SyncResult> {
  const run = beginSync(options)
  run.progress.phase('sync: building manifest')
  const checked = await checkStep(run)
  if (checked.skip) return skippedResult(run, Promise.resolve())

  const transfer = loadTransfer()
  const local = await manifestStep(run, checked)
  const folded = await foldedSync(run, local, checked, transfer)
  if (folded) return folded
  run.progress.phase('sync: checking the runner')
  const runner = await readRunner(run, local.probe)
  const hashed = await hashStep(run, local.manifest, runner.remote)
  const decision = planStep({
    manifest: local.manifest,
    hashed,
    remote: runner.remote,
    probe: runner.probe,
    config: run.config,
    useFingerprint: run.useFingerprint,
    env: run.env,
  })
  if (decision.skip) return skippedResult(run, rememberSnapshot(run, local.manifest, decision.fingerprint, hashed))
  for (const message of decision.warnings) run.warn(message)

  const sent = await sendStep(run, local, decision, transfer)
  await gitSeedStep(run, local, decision, runner.probe, sent)
  return syncedResult(run, decision.plan, rememberStep(run, local.manifest, sent, hashed))
}
