import { saveHashes, type HashedManifest } from '../fingerprint.js'
import type { Manifest } from '../manifest.js'
import { saveSnapshot } from '../snapshot.js'
import { noteLastCheckout } from '../warm-files.js'
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
  return later(async () => {
    const hashes = sent.hashes ?? hashed?.hashes
    await Promise.all([
      hashes && saveHashes(manifest, hashes).catch(() => {}),
      run.sent.write(sent.fingerprint, sent.records).catch(() => {}),
    ])
    if (run.useFingerprint) await saveSnapshot(manifest, sent.fingerprint, run.config, hashes, run.watch).catch(() => {})
    await noteLastCheckout(manifest.root)
  })
}

/** The snapshot alone: the runner already held this checkout. */
export function rememberSnapshot(run: SyncRun, manifest: Manifest, fingerprint: string, hashed?: HashedManifest): Promise<void> {
  return later(async () => {
    if (hashed) await saveHashes(manifest, hashed.hashes).catch(() => {})
    if (run.useFingerprint) await saveSnapshot(manifest, fingerprint, run.config, hashed?.hashes, run.watch).catch(() => {})
  })
}

/**
 * Runs the bookkeeping on a later turn of the event loop, so the caller's
 * next exec (the command) is on the wire before the JSON is built and
 * written. Never rejects.
 */
function later(work: () => Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve)).then(work).catch(() => {})
}
