import type { ExecResult } from '../../../transport/ssh/types.js'
import type { GuardedCommand, Probed } from '../../sync/guard.js'
import type { SyncOptions } from '../../sync/index.js'
import type { UnchangedCheck } from '../../sync/snapshot.js'
import { interruptedError } from '../lifecycle.js'
import { forwardedEnv } from '../remote-command.js'
import { formatMs, NOTHING_TO_SYNC, syncingLine } from '../../../ui/format.js'
import type { SyncPhase } from '../../sync/timer.js'
import { stopwatch } from '../timing.js'
import type { RunPlan, RunState } from './plan.js'
import type { LiveRun } from './session.js'

export interface SyncOutcome {
  skipped: boolean
  phases: SyncPhase[]
  ms: number
  /** The command, when it ran in the same exec as the runner's fingerprint check (sync/guard.ts). */
  ran?: { result: ExecResult; ms: number }
  /** The sync's local bookkeeping, written while the command runs; awaited before the run ends. */
  saved?: Promise<void>
}

/** Starts sync's local unchanged check early: it needs only the checkout, not the lease. */
export async function startLocalCheck(repoRoot: string, config: SyncOptions['config'], checksum: boolean): Promise<UnchangedCheck> {
  // Small modules: the sync engine only loads when something must travel.
  const { checkUnchanged } = await import('../../sync/snapshot.js')
  return checkUnchanged(repoRoot, config, { checksum })
}

/**
 * The run's sync, recorded: skipped with --no-sync; on a reused lease the warm
 * run, which checks the runner's fingerprint and runs the command in one exec.
 * Resolves with the command's result when it already ran that way.
 */
export async function syncStep(plan: RunPlan, state: RunState, live: LiveRun): Promise<SyncOutcome['ran']> {
  const { config, progress } = plan.context
  const { flags, recorder, interrupt } = plan
  let ran: SyncOutcome['ran']
  if (flags.noSync) {
    recorder.event({ type: 'sync.finished', phase: 'synced', message: 'skipped by --no-sync' })
  } else {
    recorder.event({ type: 'sync.started', phase: 'sync' })
    progress.phase(syncingLine(plan.repoRoot, live.lease.slug))
    // What every sync needs: the checkout, the runner's folder and the session to it.
    const target = {
      repoRoot: plan.repoRoot,
      workdir: live.workdir,
      config: config.sync,
      session: live.session,
      progress,
      forceLarge: flags.forceSyncLarge || config.sync.allowLarge,
      signal: interrupt.signal,
    }
    state.sync = await interruptible(interrupt.signal, async () =>
      live.windowsNative
        ? (await import('../../windows/sync.js')).syncWindows(target)
        : syncOrWarmRun({
            ...target,
            checksum: plan.checksum,
            check: plan.localCheck,
            // A reused lease most likely holds this checkout already: check and run in one exec.
            thenRun:
              live.remote && flags.id
                ? {
                    command: live.remote.command,
                    env: forwardedEnv(config.env.allow),
                    signal: interrupt.signal,
                    ...live.output,
                    onStart: (synced?: string) => warmRunStarts(plan, live, synced),
                  }
                : undefined,
          }),
    )
    if (!state.sync.ran)
      recorder.event({
        type: 'sync.finished',
        phase: 'synced',
        message: `duration=${formatMs(state.sync.ms)} skipped=${state.sync.skipped}`,
      })
    ran = state.sync.ran
  }
  if (interrupt.signal.aborted && !ran) throw interruptedError(interrupt.signal)
  return ran
}

/**
 * The warm run's command starts: right after a pipelined apply (`synced` says what was synced), or
 * with nothing to sync, when the next such run may run on the agent lane (services/lane.ts).
 */
function warmRunStarts(plan: RunPlan, live: LiveRun, synced: string | undefined): void {
  const { config, progress } = plan.context
  plan.recorder.event({
    type: 'sync.finished',
    phase: 'synced',
    message: synced
      ? `${synced} (the command started right after the apply, in the same round trip)`
      : 'skipped=true (fingerprint checked in the command exec)',
  })
  if (!synced) {
    progress.done(NOTHING_TO_SYNC)
    const sync = { repoRoot: plan.repoRoot, workdir: live.workdir, config: config.sync }
    plan.flags.beforeCommand?.({
      lease: live.lease,
      prefix: '',
      env: forwardedEnv(config.env.allow),
      broker: plan.backend.broker !== undefined,
      sync,
    })
  }
  live.commandStarts()
}

/** A sync that failed because the run was interrupted is an interrupt (130/141), not a sync error. */
async function interruptible<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    throw signal.aborted ? interruptedError(signal) : error
  }
}

/**
 * Sync, or — with `thenRun` and an early check — the warm run: check the
 * runner's fingerprint and run the command in one exec, syncing first only
 * when the runner turns out to hold something else.
 */
export async function syncOrWarmRun(
  options: Omit<SyncOptions, 'check' | 'probed'> & { check?: Promise<UnchangedCheck>; thenRun?: GuardedCommand },
): Promise<SyncOutcome> {
  const startedAt = performance.now()
  const clock = stopwatch()
  const check = await options.check
  let probed: Probed | undefined
  if (check && options.thenRun) {
    const { runIfUnchanged } = await import('../../sync/guard.js')
    const warm = await runIfUnchanged({
      repoRoot: options.repoRoot,
      workdir: options.workdir,
      config: options.config,
      session: options.session,
      check,
      run: options.thenRun,
      startedAt,
    })
    if (warm && 'ran' in warm) return { skipped: true, phases: warm.phases, ms: warm.syncMs, ran: warm.ran }
    probed = warm?.probed
  }
  // Loaded on demand: `--no-sync` runs should not pay for the sync engine's start-up.
  const { syncWorkdir } = await import('../../sync/index.js')
  // The guard waited for the check: a small change then goes as one folded exec, no probe beside it.
  const result = await syncWorkdir({ ...options, check, probed, checkAwaited: Boolean(check && options.thenRun) })
  return { skipped: result.skipped, phases: result.phases, ms: result.ran ? result.totalMs : clock(), saved: result.saved, ran: result.ran }
}
