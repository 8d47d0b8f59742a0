export interface SyncPhase {
  name: string
  ms: number
  skipped?: boolean
  reason?: string
}

/** The `--timing-json` line (reference §3 item 16), also the `--json` result of `run`. */
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
}

export const formatMs = (ms: number): string => (ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`)

/** `run summary sync=… command=… total=… sync_skipped=… exit=…`, for humans on stderr. */
export function summaryLine(timing: RunTiming): string {
  return `run summary sync=${formatMs(timing.syncMs)} command=${formatMs(timing.commandMs)} total=${formatMs(timing.totalMs)} sync_skipped=${timing.syncSkipped} exit=${timing.exitCode}`
}

/** A monotonic stopwatch. */
export function stopwatch(): () => number {
  const start = performance.now()
  return () => Math.round(performance.now() - start)
}
