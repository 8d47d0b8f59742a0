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
  process.stderr.write(`start-up: ${phase} ${(now - last).toFixed(1)} ms (at ${now.toFixed(1)} ms)\n`)
  last = now
}
