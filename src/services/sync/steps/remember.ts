import { saveHashes, type HashedManifest } from '../fingerprint.js'
import type { Manifest } from '../manifest.js'
import { snapshotOf, writeSnapshot } from '../snapshot.js'
import { noteLastCheckout } from '../warm-files.js'
import { markRemembering } from '../remembering.js'
import type { SyncRun } from './context.js'
import type { Sent } from './send.js'

/**
 * Keeps what the next sync needs locally: the hashes taken while sending, a
 * copy of the runner's record under its fingerprint, and the snapshot (with
 * the manifest and its hashes) the next unchanged check compares with. Best
 * effort: a failure only costs speed later. Started after the runner holds the
 * files and not awaited by the sync: it overlaps the command (see later()).
 */
export function rememberStep(run: SyncRun, manifest: Manifest, sent: Sent, hashed?: HashedManifest): Promise<void> {
  return later(manifest.root, async () => {
    // Decided first, while the command still runs: the writing may outlast it (see later()).
    const snapshot = run.useFingerprint ? snapshotOf(manifest, sent.fingerprint, run.config) : undefined
    const hashes = sent.hashes ?? hashed?.hashes
    await Promise.all([
      hashes && saveHashes(manifest, hashes).catch(() => {}),
      run.sent.write(sent.fingerprint, sent.records()).catch(() => {}),
    ])
    await writeSnapshot(manifest, snapshot, hashes, run.watch).catch(() => {})
    await noteLastCheckout(manifest.root)
  })
}

/** The snapshot alone: the runner already held this checkout. */
export function rememberSnapshot(run: SyncRun, manifest: Manifest, fingerprint: string, hashed?: HashedManifest): Promise<void> {
  return later(manifest.root, async () => {
    const snapshot = run.useFingerprint ? snapshotOf(manifest, fingerprint, run.config) : undefined
    if (hashed) await saveHashes(manifest, hashed.hashes).catch(() => {})
    await writeSnapshot(manifest, snapshot, hashed?.hashes, run.watch).catch(() => {})
  })
}

/**
 * Runs the bookkeeping on a later turn of the event loop, so the caller's
 * next exec (the command) is on the wire before the JSON is built and
 * written; marked meanwhile, so the next sync of `root` waits for it
 * (remembering.ts). The command's exit code may reach the user before it is
 * written (src/exit-hold.ts), so what it records of the checkout is decided
 * at its start, while the command still runs. Never rejects.
 */
function later(root: string, work: () => Promise<void>): Promise<void> {
  const done = markRemembering(root)
  return new Promise<void>((resolve) => setImmediate(resolve))
    .then(work)
    .catch(() => {})
    .finally(done)
}
