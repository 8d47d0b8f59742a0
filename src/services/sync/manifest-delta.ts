import { execFile } from 'node:child_process'
import { lstatSync, type Stats } from 'node:fs'
import type { Config } from '../../config/schema.js'
import { type Excludes, loadExcludes } from './excludes.js'
import { HashCache, excludesKey } from './hash-cache.js'
import { checkPath, manifestEntry, realDirCheck, type Manifest, type ManifestEntry } from './manifest.js'
import type { Moved } from './snapshot.js'
import { readStoredManifest, type StoredManifest } from './stored-manifest.js'

const split0 = (text: string | undefined) => (text ? text.split('\0').filter(Boolean) : [])

const byPath = (a: ManifestEntry, b: ManifestEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)

/** Two lists sorted by path, as one, with the hashes known for each (`aHashes` beside `a`; none for `b`). */
function mergeSorted(
  a: ManifestEntry[],
  aHashes: (string | undefined)[],
  b: ManifestEntry[],
): { entries: ManifestEntry[]; known: (string | undefined)[] } {
  if (b.length === 0) return { entries: a, known: aHashes }
  const entries: ManifestEntry[] = []
  const known: (string | undefined)[] = []
  let j = 0
  for (let i = 0; i < a.length; i++) {
    while (j < b.length && byPath(b[j], a[i]) < 0) {
      entries.push(b[j++])
      known.push(undefined)
    }
    entries.push(a[i])
    known.push(aHashes[i])
  }
  while (j < b.length) {
    entries.push(b[j++])
    known.push(undefined)
  }
  return { entries, known }
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
  const excludes = loadExcludes(root, config)
  const stored = await readStoredManifest(root, moved.snapshot.manifest)
  if (!stored) return undefined
  if (moved.named) return namedManifest(root, moved, moved.named, stored, excludes)
  const untrackedNow = moved.untracked ?? stored.untracked
  const others = new Set(split0(untrackedNow))
  const tracked = new Set(stored.tracked)
  const again = new Set([...split0(moved.changed), ...split0(stored.changed), ...split0(stored.untracked), ...others, ...stored.flagged])
  const looked = lookAgain(root, stored, excludes, tracked, again, (path) => tracked.has(path) || others.has(path))
  return {
    ...looked,
    git: { ...moved.snapshot.git, tracked },
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

/** The stored entries (and hashes) split into those kept as they are and those looked at again. */
function splitStored(stored: StoredManifest, again: Set<string>) {
  const at: number[] = []
  for (let i = 0; i < stored.entries.length; i++) if (again.has(stored.entries[i].path)) at.push(i)
  return {
    kept: withoutIndices(stored.entries, at),
    keptHashes: withoutIndices(stored.hashes, at),
    againEntries: at.map((i) => stored.entries[i]),
    againHashes: at.map((i) => stored.hashes[i]),
  }
}

/**
 * `list` without the items at `at` (ascending), copied in the runs between them rather than item
 * by item: a few paths looked at again among many thousands. Positions stay aligned, holes included
 * (a stored hash may be missing).
 */
function withoutIndices<T>(list: T[], at: number[]): T[] {
  const runs: T[][] = []
  let from = 0
  for (const i of at) {
    runs.push(list.slice(from, i))
    from = i + 1
  }
  runs.push(list.slice(from))
  return ([] as T[]).concat(...runs)
}

/**
 * The stored manifest with the paths in `again` looked at again, each through
 * the same rules as the full pass (safe path, excludes, no symlinked parent,
 * lstat). `candidate`: whether the full pass would list the path (tracked, or
 * untracked and not ignored). A path that is missing now is pruned when tracked.
 */
function lookAgain(
  root: string,
  stored: StoredManifest,
  excludes: Excludes,
  tracked: Set<string>,
  again: Set<string>,
  candidate: (path: string) => boolean,
): Omit<Manifest, 'git' | 'gitView'> {
  // The entries kept carry their stored hash; only the paths looked at again go through the hash cache.
  const { kept, keptHashes, againEntries, againHashes } = splitStored(stored, again)
  const cache = HashCache.fromEntries(root, againEntries, againHashes, excludesKey(excludes.patterns))
  const deleted = stored.deleted.filter((path) => !again.has(path))
  const rejected = stored.rejected.filter((rejection) => !again.has(rejection.path))
  const isRealDir = realDirCheck(root)
  // The stored entries are sorted: the few looked at again are sorted on their own and merged in.
  const added: ManifestEntry[] = []
  for (const path of again) {
    // A candidate of the full pass: tracked (in the unchanged index) or untracked and not ignored now.
    if (!candidate(path)) continue
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
  const { entries, known } = mergeSorted(kept, keptHashes, added.sort(byPath))
  let bytes = 0
  for (const entry of entries) bytes += entry.size
  return {
    root,
    entries,
    deleted: [...new Set(deleted)].sort(),
    rejected,
    excludes: excludes.patterns,
    files: entries.length,
    bytes,
    cache,
    known,
    incremental: true,
  }
}

/** Of `paths`, the untracked files git does not ignore (its own rules, `--literal-pathspecs`). */
function untrackedAmong(root: string, paths: string[]): Promise<Set<string>> {
  if (paths.length === 0) return Promise.resolve(new Set())
  const args = ['--literal-pathspecs', '-C', root, 'ls-files', '-z', '--others', '--exclude-standard', '--', ...paths]
  return new Promise((resolve, reject) =>
    execFile('git', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (error, stdout) =>
      error ? reject(error) : resolve(new Set(split0(stdout))),
    ),
  )
}

/** Whether the stored manifest (sorted by path) has an entry for `path`. */
function storedHas(stored: StoredManifest, path: string): boolean {
  let lo = 0
  let hi = stored.entries.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const at = stored.entries[mid].path
    if (at === path) return true
    if (at < path) lo = mid + 1
    else hi = mid - 1
  }
  return false
}

/** Raw NUL-terminated listing, as git prints it with `-z`. */
const listing = (paths: Iterable<string>) =>
  [...paths]
    .sort()
    .map((path) => `${path}\0`)
    .join('')

/**
 * The incremental manifest from the paths the agent's watcher named
 * (snapshot.ts, byNamed): no git listing of the checkout. The unchanged check
 * proved HEAD, the index, git's config and refs, the excludes and every ignore
 * rule the same, and the watcher saw no event on any other path since the
 * stored manifest's stamp, so every other entry stands. A named path is a
 * candidate when it is tracked (the index did not change) or untracked and
 * not ignored: untracked then and still there (the rules did not change), or
 * new, which git alone decides (`ls-files --others` over just those paths).
 * The listings kept for the next check are the stored ones with the named
 * paths added (a superset of what git would print: a later git-based pass
 * looks at each again).
 */
async function namedManifest(
  root: string,
  moved: Moved,
  named: string[],
  stored: StoredManifest,
  excludes: Excludes,
): Promise<Manifest | undefined> {
  // Which named paths are tracked, without a set of the whole index for a few paths; the manifest's set is made when asked for.
  let all: Set<string> | undefined
  const index = () => (all ??= new Set(stored.tracked))
  const tracked = new Set(
    named.length <= 16 ? named.filter((path) => stored.tracked.includes(path)) : named.filter((path) => index().has(path)),
  )
  const before = new Set(split0(stored.untracked))
  const exists = (path: string) => lstatSync(`${root}/${path}`, { throwIfNoEntry: false })
  const present = new Map(named.map((path) => [path, exists(path)]))
  // A named path that is a folder now: not a change the watcher names (it would have rebuilt): git decides.
  if ([...present.values()].some((stat) => stat?.isDirectory())) return undefined
  const fresh = named.filter((path) => !tracked.has(path) && !before.has(path) && present.get(path))
  const listed = await untrackedAmong(root, fresh)
  const untracked = new Set([...before].filter((path) => !present.has(path) || present.get(path)))
  for (const path of listed) untracked.add(path)
  // Only edits in place (every named path was and still is there): the folders' entries did not move.
  const inPlace = named.every((path) => present.get(path) && (tracked.has(path) || before.has(path) || storedHas(stored, path)))
  const looked = lookAgain(root, stored, excludes, tracked, new Set(named), (path) => tracked.has(path) || untracked.has(path))
  return {
    ...looked,
    git: {
      ...moved.snapshot.git,
      get tracked() {
        return index()
      },
    },
    gitView: {
      at: moved.at,
      files: moved.files,
      changed: listing(new Set([...split0(stored.changed), ...named.filter((path) => tracked.has(path))])),
      untracked: listing(untracked),
      flagged: stored.flagged,
      folders: inPlace ? moved.snapshot.folders : undefined,
      pruned: moved.snapshot.pruned,
      global: moved.global,
    },
  }
}
