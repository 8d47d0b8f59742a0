import { CrabboxError } from '../../errors.js'
import type { HashedManifest } from './fingerprint.js'
import type { Manifest, ManifestEntry } from './manifest.js'
import { UNKNOWN, encodeRecord, type RemoteRecord } from './records.js'

/** Deleting this many tracked files on the runner needs CRABBOX_ALLOW_MASS_DELETIONS=1. */
export const MASS_DELETION_LIMIT = 200

export interface SyncPlan {
  /** Entries whose content or mode differs from the runner's record. */
  send: ManifestEntry[]
  sendBytes: number
  /** Paths crabbox put on the runner earlier that are gone locally. */
  remove: string[]
  /** Records for sent paths the runner already knew: marked unknown until they land. */
  pending: string[]
  /**
   * The runner's record after this sync, in manifest order. Built when first asked: a small
   * change sends only `delta`, and the whole record is wanted only by the bookkeeping that runs
   * beside the command (steps/remember.ts), not on the way to it.
   */
  records: () => Buffer
  /** Only what changed, to append to the runner's record. */
  delta: string[]
}

/**
 * Compares the local manifest with the runner's record: what to send, what to
 * prune. Only paths in that record are ever pruned, so nothing crabbox did
 * not put there (caches, build output, `.git`) is touched.
 */
export function planSync(
  manifest: Manifest,
  hashed: HashedManifest,
  remote: Map<string, RemoteRecord>,
  options: { delete: boolean },
): SyncPlan {
  const send: ManifestEntry[] = []
  const pending: string[] = []
  const delta: string[] = []
  // Runner paths kept though gone here (delete off): they stay in the record.
  const kept: string[] = []
  let sendBytes = 0
  // How many of the runner's paths the manifest holds: all of them (the usual case) means none to prune.
  let matched = 0
  manifest.entries.forEach((entry, i) => {
    const hash = hashed.hashes[i]
    const known = remote.get(entry.path)
    if (known) matched++
    if (known && known.hash === hash && known.mode === entry.mode) return
    send.push(entry)
    sendBytes += entry.size
    delta.push(encodeRecord(hash, entry.mode, entry.path))
    if (known) pending.push(encodeRecord(UNKNOWN, entry.mode, entry.path))
  })
  const remove: string[] = []
  // Manifest paths are unique, so `matched` counts distinct runner paths: fewer means some are only there.
  if (matched < remote.size) {
    const local = new Set(manifest.entries.map((entry) => entry.path))
    for (const [path, known] of remote) {
      if (local.has(path)) continue
      if (options.delete) {
        remove.push(path)
        delta.push(encodeRecord('-', known.mode, path))
      } else {
        // Kept on the runner, so it stays in the record: a later sync with delete on prunes it.
        kept.push(encodeRecord(known.hash, known.mode, path))
      }
    }
  }
  remove.sort()
  const records = once(() =>
    Buffer.from(manifest.entries.map((entry, i) => encodeRecord(hashed.hashes[i], entry.mode, entry.path)).join('') + kept.join('')),
  )
  return { send, sendBytes, remove, pending, records, delta }
}

const NO_RECORDS = Buffer.alloc(0)

/** `make`'s result, made on the first call and kept. */
function once<T>(make: () => T): () => T {
  let made: { value: T } | undefined
  return () => (made ??= { value: make() }).value
}

/** The runner holds nothing crabbox recorded: send everything, prune nothing. */
export function planEverything(manifest: Manifest): SyncPlan {
  return { send: manifest.entries, sendBytes: manifest.bytes, remove: [], pending: [], records: () => NO_RECORDS, delta: [] }
}

/**
 * Stops a sync that would delete many tracked files on the runner (a botched
 * checkout, a too-broad exclude), unless the user says it is intended.
 */
export function massDeletionGuard(manifest: Manifest, remove: string[], env: NodeJS.ProcessEnv = process.env): void {
  const tracked = manifest.git ? remove.filter((path) => manifest.git!.tracked.has(path)) : remove
  if (tracked.length < MASS_DELETION_LIMIT || env.CRABBOX_ALLOW_MASS_DELETIONS === '1') return
  const shown = tracked.slice(0, 20).map((path) => `  ${path}`)
  const more = tracked.length > shown.length ? [`  … and ${tracked.length - shown.length} more`] : []
  throw new CrabboxError(`sync would delete ${tracked.length} tracked files on the runner:\n${[...shown, ...more].join('\n')}`, {
    exit: 'sync',
    code: 'mass_deletion',
    hint: 'If that is intended, run again with CRABBOX_ALLOW_MASS_DELETIONS=1; otherwise restore the files (git status) or fix sync.exclude.',
  })
}
