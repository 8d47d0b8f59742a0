/**
 * `CRABBOX_TRACE_START=1` on the fast path: one stderr line per start-up phase,
 * `start-up: <phase> <ms> (at <ms>)`, in ms since the process started (or, in the agent's
 * spare worker, since it got the command); docs/performance.md's profile of a warm run. The
 * fast path turns it on (`startTrace`); services add marks inside the command (`startMark`),
 * which stay silent on the full CLI and in the agent.
 */
let tracing = false
let origin = 0
let last = 0

export function startTrace(on: boolean, at = 0): void {
  tracing = on
  origin = at
  last = 0
}

export function startMark(phase: string): void {
  if (!tracing) return
  const now = performance.now() - origin
  process.stderr.write(startUpLine(phase, now - last, now))
  last = now
}

/**
 * One line of the trace, the one format for every process that writes one (this module, the thin
 * client, the agent lane) and for the benches that read them: `start-up: <phase> <ms> ms`, and
 * ` (at <ms> ms)` since the process started when `at` is given.
 */
export function startUpLine(phase: string, ms: number, at?: number): string {
  return `start-up: ${phase} ${ms.toFixed(1)} ms${at === undefined ? '' : ` (at ${at.toFixed(1)} ms)`}\n`
}
