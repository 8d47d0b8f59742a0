import { hashManifest, type HashedManifest } from '../fingerprint.js'
import { formatBytes, plural } from '../../../ui/format.js'
import { buildManifest, checkSize, readGitContext, type GitContext, type Manifest } from '../manifest.js'
import type { RemoteRecord } from '../records.js'
import { beginGitView, NAMED, type GitView } from '../snapshot.js'
import { startMark } from '../../../start-marks.js'
import type { Checked } from './check.js'
import type { SyncRun } from './context.js'
import { lazyProbe, probeFor, type PendingProbe } from './probe.js'

export interface LocalSide {
  manifest: Manifest
  /** The metadata dir on the runner: `.git/crabbox` in a git checkout, else `.crabbox`. */
  meta: string
  /** The probe for the checkout's git context (restarted when the check's guess was wrong); lazy when the fold goes first. */
  probe: PendingProbe & { answered?(stdout: Buffer): void }
}

/** The local manifest, built while the probe's round trip is in flight; size and safety warnings. */
export async function manifestStep(run: SyncRun, checked: Checked): Promise<LocalSide> {
  const { options, config, timer } = run
  const known = checked.unchanged ?? checked.moved?.snapshot
  const { git, view } = known ? { git: known.git, view: undefined } : await timer.phase('manifest', () => readGit(run))
  // The runner round trip overlaps the local manifest and hashing.
  const probe = checked.fold ? lazyProbe(run, checked.known, git) : probeFor(run, checked.known, checked.probe, git)
  const manifest = await timer.phase('manifest', () => localManifest(run, checked, git, view))
  const named = manifest.incremental && checked.moved?.named
  startMark(manifest.incremental ? `sync: incremental manifest${named ? ' (named paths)' : ''}` : 'sync: manifest pass')
  // The watcher named what moved: git listed nothing (`--timing-json` says so).
  if (named) timer.note('manifest', NAMED)
  for (const message of checkSize(manifest, config, { forceLarge: options.forceLarge, env: run.env }).warnings) run.warn(message)
  if (manifest.rejected.length > 0) {
    run.warn(`not syncing ${manifest.rejected.length} unsafe path(s), e.g. ${manifest.rejected[0].path}: ${manifest.rejected[0].reason}`)
  }
  run.progress.detail(`sync candidate: ${plural(manifest.files, 'file')}, ${formatBytes(manifest.bytes)}`)
  return { manifest, meta: git ? '.git/crabbox' : '.crabbox', probe }
}

/** The incremental manifest when only git's listings moved (manifest-delta.ts), else the full pass. */
async function localManifest(
  run: SyncRun,
  checked: Checked,
  git: GitContext | undefined,
  view: Pick<GitView, 'at' | 'files'> | undefined,
): Promise<Manifest> {
  const { options, config } = run
  if (checked.moved) {
    const { deltaManifest } = await import('../manifest-delta.js')
    const delta = await deltaManifest(options.repoRoot, config, checked.moved).catch(() => undefined)
    if (delta) return delta
  }
  // A full pass; git's files are looked at first again when only the stored manifest was missing.
  const fresh = view ?? (checked.moved && !checked.unchanged ? (await readGit(run)).view : undefined)
  return buildManifest(options.repoRoot, config, { git, view: fresh })
}

async function readGit(run: SyncRun): Promise<{ git: GitContext | undefined; view?: Pick<GitView, 'at' | 'files'> }> {
  // Git's files are looked at before git is asked anything, so a change racing this pass shows next time.
  const view = run.useFingerprint ? beginGitView(run.options.repoRoot, run.config) : undefined
  return { git: await readGitContext(run.options.repoRoot, run.config), view }
}

/**
 * Content hashes, when the runner holds a record to compare them with. With
 * nothing recorded on the runner every file goes, hashed as it is read for the
 * tar instead of in a pass of its own.
 */
export async function hashStep(run: SyncRun, manifest: Manifest, remote: Map<string, RemoteRecord>): Promise<HashedManifest | undefined> {
  if (remote.size === 0) {
    run.timer.skip('fingerprint', 'runner holds nothing yet: hashed while sending')
    return undefined
  }
  return run.timer.phase('fingerprint', () => hashManifest(manifest, { checksum: run.options.checksum, save: false }))
}
