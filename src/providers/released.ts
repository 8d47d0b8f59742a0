import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as v from 'valibot'
import { stateDir } from '../paths.js'
import { normalizeSlug } from '../protocol/ids.js'

/**
 * Direct-mode leases this machine released, so `crabbox stop` can tell "already
 * released" (exit 0) from a name it never knew (exit 4) once the lease's own
 * record is gone. Kept for a week, the newest 200.
 */
const Released = v.array(v.object({ id: v.string(), slug: v.string(), at: v.number() }))
type Released = v.InferOutput<typeof Released>

const KEEP_MS = 7 * 24 * 3_600_000
const KEEP_COUNT = 200
const releasedPath = () => join(stateDir(), 'released.json')

function readReleased(): Released {
  try {
    const parsed = v.safeParse(Released, JSON.parse(readFileSync(releasedPath(), 'utf8')))
    return parsed.success ? parsed.output.filter((entry) => Date.now() - entry.at < KEEP_MS) : []
  } catch {
    return []
  }
}

/** Best effort: a failure to remember only makes a later `stop` of this lease exit 4. */
export function rememberReleased(lease: { id: string; slug: string }): void {
  try {
    const entries = [...readReleased().filter((entry) => entry.id !== lease.id), { id: lease.id, slug: lease.slug, at: Date.now() }]
    mkdirSync(stateDir(), { recursive: true, mode: 0o700 })
    const temp = `${releasedPath()}.${process.pid}`
    writeFileSync(temp, JSON.stringify(entries.slice(-KEEP_COUNT)), { mode: 0o600 })
    renameSync(temp, releasedPath())
  } catch {
    // nothing to do
  }
}

/** The released lease with this ID or slug, newest first. */
export function findReleased(idOrSlug: string): { id: string; slug: string } | undefined {
  const slug = normalizeSlug(idOrSlug)
  return readReleased()
    .reverse()
    .find((entry) => entry.id === idOrSlug || entry.slug === slug)
}
