import type { Lease } from '../../providers/types.js'
import type { Progress } from '../../ui/progress.js'
import { waitForReady } from '../readiness.js'
import type { SyncOptions, SyncResult } from '../sync/index.js'
import type { UnchangedCheck } from '../sync/snapshot.js'
import type { SyncPhase } from './timing.js'

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
  /** The command, when it ran in the same exec as the fingerprint check (SyncOptions.thenRun). */
  ran?: SyncResult['ran']
}

/** Starts sync's local unchanged check early: it needs only the checkout, not the lease. */
export async function startLocalCheck(repoRoot: string, config: SyncOptions['config'], checksum: boolean): Promise<UnchangedCheck> {
  // Its own small module: the sync engine loads meanwhile, on demand.
  const { checkUnchanged } = await import('../sync/snapshot.js')
  const check = checkUnchanged(repoRoot, config, { checksum })
  // The engine compiles while git answers the check.
  void import('../sync/index.js').catch(() => {})
  return check
}

export async function syncStep(options: Omit<SyncOptions, 'check'> & { check?: Promise<UnchangedCheck> }): Promise<SyncOutcome> {
  // Loaded on demand: `--no-sync` runs should not pay for the sync engine's start-up.
  const { syncWorkdir } = await import('../sync/index.js')
  const result = await syncWorkdir({ ...options, check: await options.check })
  return { skipped: result.skipped, phases: result.phases, ms: Math.round(result.totalMs), ran: result.ran }
}
