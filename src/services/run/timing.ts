import type { SyncPhase } from '../sync/timer.js'

/** The `--timing-json` line, also the `--json` result of `run`. */
export interface RunTiming {
  provider: string
  leaseId: string
  slug: string
  runId?: string
  syncMs: number
  syncPhases: SyncPhase[]
  syncSkipped: boolean
  commandMs: number
  totalMs: number
  exitCode: number
  /** How the runner was reached (`tailscale` or `public`), at which address, and why (services/network.ts). */
  network?: string
  networkHost?: string
  networkReason?: string
  /** Set when the run was stopped from here: a signal (130) or a closed stdout or stderr (141). */
  interrupted?: 'signal' | 'closed pipe'
}

/** A monotonic stopwatch. */
export function stopwatch(): () => number {
  const start = performance.now()
  return () => Math.round(performance.now() - start)
}

/** The `--timing-json` line of a warmup: `run`'s timing record, with nothing synced and no command. */
export const warmupTiming = (
  lease: { id: string; slug: string; provider: string; host?: string; network?: string; networkReason?: string },
  totalMs: number,
): RunTiming => ({
  provider: lease.provider,
  leaseId: lease.id,
  slug: lease.slug,
  ...(lease.network ? { network: lease.network, networkHost: lease.host, networkReason: lease.networkReason } : {}),
  syncMs: 0,
  syncPhases: [],
  syncSkipped: true,
  commandMs: 0,
  totalMs,
  exitCode: 0,
})
