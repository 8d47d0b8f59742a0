import { saveHashes, type HashedManifest } from '../fingerprint.js'
import type { Manifest } from '../manifest.js'
import { saveSnapshot } from '../snapshot.js'
import type { SyncRun } from './context.js'
import type { Sent } from './send.js'

/**
 * Keeps what the next sync needs locally: the hashes taken while sending, a
 * copy of the runner's record under its fingerprint, and the snapshot the next
 * unchanged check compares with. Best effort: a failure only costs speed later.
 */
export async function rememberStep(run: SyncRun, manifest: Manifest, sent: Sent, hashed?: HashedManifest): Promise<void> {
  const hashes = sent.hashes ?? hashed?.hashes
  if (hashes) await saveHashes(manifest, hashes).catch(() => {})
  await run.sent.write(sent.fingerprint, sent.records).catch(() => {})
  await rememberSnapshot(run, manifest, sent.fingerprint)
}

/** The snapshot alone: the runner already held this checkout. */
export async function rememberSnapshot(run: SyncRun, manifest: Manifest, fingerprint: string, hashed?: HashedManifest): Promise<void> {
  if (hashed) await saveHashes(manifest, hashed.hashes).catch(() => {})
  if (run.useFingerprint) await saveSnapshot(manifest, fingerprint, run.config).catch(() => {})
}
