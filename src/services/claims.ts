import { closeSync, mkdirSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as v from 'valibot'
import { CrabboxError } from '../errors.js'
import { stateDir } from '../paths.js'
import type { Lease } from '../providers/types.js'

/**
 * Repo claims: which checkout on this machine works on a lease. A lease used from one
 * checkout is not silently picked up by another (two checkouts syncing into one runner
 * would overwrite each other's work); `--reclaim` moves the claim deliberately.
 *
 * One JSON file per lease under `<state>/repo-claims/`. Every change happens under a
 * per-lease lock file (created exclusively, so two processes never decide at once) and
 * is written to a temporary file first and renamed into place, so a reader sees the
 * old claim or the new one, never half of one.
 */
const RepoClaim = v.object({
  leaseID: v.pipe(v.string(), v.minLength(1)),
  slug: v.optional(v.string()),
  provider: v.optional(v.string()),
  /** The checkout's git root (symlinks resolved): the repo identity. */
  repoRoot: v.pipe(v.string(), v.minLength(1)),
  claimedAt: v.string(),
})
export type RepoClaim = v.InferOutput<typeof RepoClaim>

const LOCK_STALE_MS = 10_000
const LOCK_WAIT_MS = 15_000

export const claimsDir = () => join(stateDir(), 'repo-claims')
const claimPath = (leaseId: string) => join(claimsDir(), `${encodeURIComponent(leaseId)}.json`)

/** The checkout a path belongs to, as claims compare it. */
export function repoIdentity(repoRoot: string): string {
  try {
    return realpathSync(repoRoot)
  } catch {
    return repoRoot
  }
}

/** The lease's claim; a missing, unreadable or incomplete file is no claim. */
export function readClaim(leaseId: string): RepoClaim | undefined {
  try {
    const parsed = v.safeParse(RepoClaim, JSON.parse(readFileSync(claimPath(leaseId), 'utf8')))
    return parsed.success && parsed.output.leaseID === leaseId ? parsed.output : undefined
  } catch {
    return undefined
  }
}

async function withLock<T>(leaseId: string, work: () => T): Promise<T> {
  mkdirSync(claimsDir(), { recursive: true, mode: 0o700 })
  const lock = `${claimPath(leaseId)}.lock`
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600))
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      // A holder that died leaves its lock behind; nobody holds one for long.
      try {
        if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) rmSync(lock, { force: true })
      } catch {
        // Gone meanwhile: try again.
      }
      if (Date.now() > deadline) throw new CrabboxError(`the claim of lease ${leaseId} is locked (${lock})`, { exit: 'error' })
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30))
    }
  }
  try {
    return work()
  } finally {
    rmSync(lock, { force: true })
  }
}

function writeClaim(claim: RepoClaim): void {
  const path = claimPath(claim.leaseID)
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, `${JSON.stringify(claim, null, 2)}\n`, { mode: 0o600 })
  renameSync(temporary, path)
}

export interface ClaimOptions {
  /** The checkout this command runs from (its git root, else the working directory). */
  repoRoot: string
  /** `--reclaim`: take the lease over from whichever checkout holds it. */
  reclaim: boolean
}

export interface ClaimOutcome {
  claim: RepoClaim
  /** The checkout that held the lease before `--reclaim` moved it here. */
  reclaimedFrom?: string
}

/**
 * Claims the lease for this checkout. Held by this checkout or nobody: (re)written. Held
 * by another: exit 2 naming that checkout and `--reclaim`, unless `reclaim` is set.
 */
export async function claimLease(lease: Pick<Lease, 'id' | 'slug' | 'provider'>, options: ClaimOptions): Promise<ClaimOutcome> {
  const repoRoot = repoIdentity(options.repoRoot)
  // The warm path: this checkout already holds it. A claim file is only ever replaced by
  // rename, so an unlocked read sees a whole claim; only a change takes the lock.
  const current = readClaim(lease.id)
  if (current && current.repoRoot === repoRoot) return { claim: current }
  return withLock(lease.id, () => {
    const held = readClaim(lease.id)
    if (held && held.repoRoot === repoRoot) return { claim: held }
    if (held && !options.reclaim)
      throw new CrabboxError(`lease ${lease.id} (${lease.slug}) is claimed by another checkout: ${held.repoRoot}`, {
        exit: 'usage',
        code: 'claimed',
        hint: `use it from ${held.repoRoot}, or pass --reclaim to move the claim to ${repoRoot}`,
      })
    const claim: RepoClaim = {
      leaseID: lease.id,
      slug: lease.slug,
      provider: lease.provider,
      repoRoot,
      claimedAt: new Date().toISOString(),
    }
    writeClaim(claim)
    return held ? { claim, reclaimedFrom: held.repoRoot } : { claim }
  })
}

/** What `--reclaim` says when it moved a claim. */
export const reclaimedWarning = (lease: Pick<Lease, 'id' | 'slug'>, from: string) => `reclaimed ${lease.id} (${lease.slug}) from ${from}`

/** Forgets the lease's claim (it was released). */
export function forgetClaim(leaseId: string): void {
  rmSync(claimPath(leaseId), { force: true })
}

/** The part of a lease backend (`services/lease.ts`) that hands out leases. */
interface ClaimableBackend {
  acquire(request: { keep: boolean; leaseId?: string }): Promise<Lease>
  resolve(idOrSlug: string): Promise<Lease>
  release(lease: Lease): Promise<void>
}

/**
 * The backend with every lease it resolves or acquires claimed for this checkout, so
 * `run --id`, `ssh` and `warmup` refuse a lease another checkout holds. Only an existing
 * host comes back from `acquire` under an ID it had before (the ssh provider's
 * `static_<host>`); refused, it is left as it is: the other checkout is using it.
 * Any other failure to claim a lease just acquired releases it.
 */
export function claimingBackend<B extends ClaimableBackend>(
  backend: B,
  options: ClaimOptions & { onReclaim?: (from: string, lease: Lease) => void },
): B {
  const claim = async (lease: Lease) => {
    const outcome = await claimLease(lease, options)
    if (outcome.reclaimedFrom) options.onReclaim?.(outcome.reclaimedFrom, lease)
    return lease
  }
  return {
    ...backend,
    resolve: async (idOrSlug) => claim(await backend.resolve(idOrSlug)),
    async acquire(request) {
      const lease = await backend.acquire(request)
      try {
        return await claim(lease)
      } catch (error) {
        // A new lease nobody could claim (the state folder cannot be written) is released, never leaked.
        if (!(error instanceof CrabboxError && error.code === 'claimed')) await backend.release(lease).catch(() => undefined)
        throw error
      }
    },
  }
}
