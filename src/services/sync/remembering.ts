import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pidAlive } from '../../pids.js'
import { cacheDir } from './hash-cache.js'

/*
 * A run's bookkeeping (steps/remember.ts) may still be written after its exit code reached the
 * user (src/exit-hold.ts). The next sync of the same checkout waits for it, so it reads the
 * snapshot, stored manifest and record of the sync before it, not of the one before that (which
 * would still be correct, the runner's check sees to that, but slower). Each writer leaves a
 * `remembering-<pid>` file in the checkout's cache folder while it writes.
 */

const PREFIX = 'remembering-'
/** A writer that takes longer than this is not waited for: the next sync then takes the slower, still correct path. */
const WAIT_MS = 2000
const POLL_MS = 5

/** Marks the bookkeeping of `root` as being written by this process; the returned function clears it. */
export function markRemembering(root: string): () => void {
  const dir = cacheDir(root)
  const file = join(dir, `${PREFIX}${process.pid}`)
  try {
    // The first sync of a checkout makes its cache folder.
    mkdirSync(dir, { recursive: true })
    writeFileSync(file, '')
  } catch {
    return () => {}
  }
  return () => rmSync(file, { force: true })
}

/** Waits (up to WAIT_MS) until no live process is writing `root`'s bookkeeping; a dead writer's mark is removed. */
export async function awaitRemembered(root: string): Promise<void> {
  const dir = cacheDir(root)
  const until = Date.now() + WAIT_MS
  while (writers(dir).length > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, POLL_MS))
}

function writers(dir: string): number[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  const live: number[] = []
  for (const name of names) {
    if (!name.startsWith(PREFIX)) continue
    const pid = Number(name.slice(PREFIX.length))
    if (pid === process.pid) continue
    if (pidAlive(pid)) live.push(pid)
    else rmSync(join(dir, name), { force: true })
  }
  return live
}
