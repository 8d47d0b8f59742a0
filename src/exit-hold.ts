/**
 * Work a command still has to finish after its exit code is known: a `run`'s sync bookkeeping
 * for the next run (services/sync/steps/remember.ts). The process must not end before it is
 * done, but nothing the user waits for depends on it: in the agent's spare worker the exit code
 * goes to the thin client first (src/warm-worker.ts), so the user's shell moves on while the
 * worker writes; everywhere else the command awaits `heldWork()` before it exits, as before.
 */
const held = new Set<Promise<unknown>>()

export function holdExit(work: Promise<unknown>): void {
  const kept = work.catch(() => undefined).finally(() => held.delete(kept))
  held.add(kept)
}

/** Resolves once every held piece of work ended (failures included), or after `limitMs`. */
export async function heldWork(limitMs = 30_000): Promise<void> {
  if (held.size === 0) return
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, limitMs)))
  await Promise.race([Promise.all([...held]), limit])
  clearTimeout(timer)
}
