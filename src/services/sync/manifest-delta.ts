import { lstatSync, type Stats } from 'node:fs'
import type { Config } from '../../config/schema.js'
import { loadExcludes } from './excludes.js'
import { HashCache, excludesKey } from './hash-cache.js'
import { checkPath, manifestEntry, realDirCheck, type Manifest, type ManifestEntry } from './manifest.js'
import type { Moved } from './snapshot.js'
import { readStoredManifest } from './stored-manifest.js'

const split0 = (text: string | undefined) => (text ? text.split('\0').filter(Boolean) : [])

const byPath = (a: ManifestEntry, b: ManifestEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)

/** Two lists sorted by path, as one. */
function mergeSorted(a: ManifestEntry[], b: ManifestEntry[]): ManifestEntry[] {
  if (b.length === 0) return a
  const out: ManifestEntry[] = []
  let j = 0
  for (const entry of a) {
    while (j < b.length && byPath(b[j], entry) < 0) out.push(b[j++])
    out.push(entry)
  }
  while (j < b.length) out.push(b[j++])
  return out
}

/**
 * The incremental manifest: the last full pass's manifest with only the paths
 * git's listings name looked at again. The unchanged check (snapshot.ts)
 * already proved HEAD, the index, git's config and refs and the excludes are
 * the same, so every tracked file `git diff-files` does not name still
 * matches the index stat for stat, as it did then: its stored entry (and the
 * hash cached for its stamps) holds. The paths looked at again: what
 * `git diff-files` names now or named then, the untracked files now and then,
 * and the index entries git does not look at (assume-unchanged,
 * skip-worktree). Each goes through the same rules as in the full pass
 * (safe path, excludes, no symlinked parent, lstat). The stored manifest
 * carries each entry's hash, so the hash cache file is not read either.
 * Undefined when the stored manifest is missing: the caller takes the full pass.
 */
export async function deltaManifest(root: string, config: Config['sync'], moved: Moved): Promise<Manifest | undefined> {
  const [stored, excludes] = await Promise.all([readStoredManifest(root, moved.snapshot.manifest), loadExcludes(root, config)])
  if (!stored) return undefined
  const cache = HashCache.fromEntries(root, stored.entries, stored.hashes, excludesKey(excludes.patterns))
  const untrackedNow = moved.untracked ?? stored.untracked
  const others = new Set(split0(untrackedNow))
  const tracked = new Set(stored.tracked)
  const again = new Set([...split0(moved.changed), ...split0(stored.changed), ...split0(stored.untracked), ...others, ...stored.flagged])

  const kept = stored.entries.filter((entry) => !again.has(entry.path))
  const deleted = stored.deleted.filter((path) => !again.has(path))
  const rejected = stored.rejected.filter((rejection) => !again.has(rejection.path))
  const isRealDir = realDirCheck(root)
  // The stored entries are sorted: the few looked at again are sorted on their own and merged in.
  const added: ManifestEntry[] = []
  for (const path of again) {
    // A candidate of the full pass: tracked (in the unchanged index) or untracked and not ignored now.
    if (!tracked.has(path) && !others.has(path)) continue
    const unsafe = checkPath(path)
    if (unsafe) {
      rejected.push({ path, reason: unsafe })
      continue
    }
    if (excludes.matcher.ignores(path)) continue
    let parentOk = true
    for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) if (!isRealDir(path.slice(0, i))) parentOk = false
    let stat: Stats | undefined
    try {
      stat = lstatSync(`${root}/${path}`)
    } catch {
      if (tracked.has(path)) deleted.push(path)
      continue
    }
    if (!parentOk) {
      rejected.push({ path, reason: 'path goes through a symlink' })
      continue
    }
    const entry = manifestEntry(root, path, stat)
    if (entry) added.push(entry)
  }
  const entries = mergeSorted(kept, added.sort(byPath))
  let bytes = 0
  for (const entry of entries) bytes += entry.size
  const git = moved.snapshot.git
  return {
    root,
    git: { ...git, tracked },
    entries,
    deleted: [...new Set(deleted)].sort(),
    rejected,
    excludes: excludes.patterns,
    files: entries.length,
    bytes,
    cache,
    incremental: true,
    gitView: {
      at: moved.at,
      files: moved.files,
      changed: moved.changed,
      untracked: untrackedNow,
      flagged: stored.flagged,
      // Folders that moved are not walked again here: the next check lists the untracked files instead.
      folders: moved.untracked === undefined ? moved.snapshot.folders : undefined,
      pruned: moved.snapshot.pruned,
      global: moved.global,
    },
  }
}
