import type { Lease } from '../../providers/types.js'
import type { Progress } from '../../ui/progress.js'
import { waitForReady } from '../../transport/ssh/readiness.js'
import type { ExecResult } from '../../transport/ssh/types.js'
import type { GuardedCommand, Probed } from '../sync/guard.js'
import type { SyncOptions } from '../sync/index.js'
import type { UnchangedCheck } from '../sync/snapshot.js'
import type { SyncPhase } from '../sync/timer.js'
import { stopwatch } from './timing.js'

const BOOTSTRAP_TIMEOUT_MS = 20 * 60_000
const LOCAL_TIMEOUT_MS = 60_000

/** Waits for the runner's SSH and readiness check; the lease then uses the port that answered. */
export async function waitReady(lease: Lease, kind: 'managed' | 'static', progress: Progress, timeoutMs?: number): Promise<void> {
  progress.phase(`waiting for SSH on ${lease.ssh.host}:${lease.ssh.port}`)
  lease.ssh = await waitForReady(lease.ssh, kind, { timeoutMs: timeoutMs ?? (lease.provider === 'local' ? LOCAL_TIMEOUT_MS : BOOTSTRAP_TIMEOUT_MS), progress })
}

export interface SyncOutcome {
  skipped: boolean
  phases: SyncPhase[]
  ms: number
  /** The command, when it ran in the same exec as the runner's fingerprint check (sync/guard.ts). */
  ran?: { result: ExecResult; ms: number }
}

/** Starts sync's local unchanged check early: it needs only the checkout, not the lease. */
export async function startLocalCheck(repoRoot: string, config: SyncOptions['config'], checksum: boolean): Promise<UnchangedCheck> {
  // Small modules: the sync engine only loads when something must travel.
  const { checkUnchanged } = await import('../sync/snapshot.js')
  return checkUnchanged(repoRoot, config, { checksum })
}

/**
 * Sync, or — with `thenRun` and an early check — the warm run: check the
 * runner's fingerprint and run the command in one exec, syncing first only
 * when the runner turns out to hold something else.
 */
export async function syncStep(options: Omit<SyncOptions, 'check' | 'probed'> & { check?: Promise<UnchangedCheck>; thenRun?: GuardedCommand }): Promise<SyncOutcome> {
  const startedAt = performance.now()
  const clock = stopwatch()
  const check = await options.check
  let probed: Probed | undefined
  if (check && options.thenRun) {
    const { runIfUnchanged } = await import('../sync/guard.js')
    const warm = await runIfUnchanged({ repoRoot: options.repoRoot, workdir: options.workdir, config: options.config, session: options.session, check, run: options.thenRun, startedAt })
    if (warm && 'ran' in warm) return { skipped: true, phases: warm.phases, ms: warm.syncMs, ran: warm.ran }
    probed = warm?.probed
  }
  // Loaded on demand: `--no-sync` runs should not pay for the sync engine's start-up.
  const { syncWorkdir } = await import('../sync/index.js')
  const result = await syncWorkdir({ ...options, check, probed })
  return { skipped: result.skipped, phases: result.phases, ms: clock() }
}
