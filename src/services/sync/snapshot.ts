import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { lstatSync, readFileSync, readdirSync, type Stats } from 'node:fs'
import { mkdir, rename, rm as rmFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Config } from '../../config/schema.js'
import { excludePatterns } from './excludes.js'
import { RACY_MS, cacheDir, excludesKey } from './hash-cache.js'
import type { GitContext, Manifest } from './manifest.js'
import { MODE_EXEC, MODE_FILE, MODE_LINK } from './modes.js'
import { storeManifest } from './stored-manifest.js'
import { awaitRemembered } from './remembering.js'

/*
 * "Nothing changed since the last fingerprint", proved without re-listing and
 * re-stating the checkout, the way `git status` itself decides it: git's own
 * files (HEAD, refs, index, config) kept their identity, `git diff-files`
 * (tracked files against the index, stat-only, in C) prints what it printed
 * then, the untracked files are the same (no folder git's untracked walk may
 * enter and no ignore rule moved, else `git ls-files --others` prints what it
 * printed then), and the few paths git does not vouch for (changed against
 * the index, untracked, assume-unchanged / skip-worktree) kept their stats.
 * Anything else: the full manifest pass, which writes a new snapshot.
 */

/** Identity of one file: inode, size, mtime, ctime and the mode we sync (or the file type). */
type Sig = string

function sigOf(stat: Stats): Sig {
  const mode = stat.isSymbolicLink()
    ? MODE_LINK
    : stat.isFile()
      ? stat.mode & 0o100
        ? MODE_EXEC
        : MODE_FILE
      : stat.isDirectory()
        ? 'd'
        : 'x'
  return `${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}:${mode}`
}

function sig(path: string): Sig | null {
  const stat = lstatSync(path, { throwIfNoEntry: false })
  return stat ? sigOf(stat) : null
}

/** The git files whose identity pins HEAD, the branch, origin's base, the index and the config. */
function gitFiles(gitDir: string, config: Config['sync']): Record<string, Sig | null> {
  const read = (name: string) => {
    try {
      return readFileSync(join(gitDir, name), 'utf8')
    } catch {
      return ''
    }
  }
  const names = new Set([
    'HEAD',
    'index',
    'config',
    'info/exclude',
    'packed-refs',
    'reftable',
    'refs/remotes/origin',
    'refs/remotes/origin/HEAD',
    'refs/remotes/origin/main',
    'refs/remotes/origin/master',
  ])
  const branch = /^ref: (refs\/\S+)/.exec(read('HEAD'))?.[1]
  if (branch) names.add(branch)
  const originHead = /^ref: (refs\/remotes\/origin\/\S+)/.exec(read('refs/remotes/origin/HEAD'))?.[1]
  if (originHead) names.add(originHead)
  if (config.baseRef) names.add(`refs/remotes/origin/${config.baseRef.replace(/^origin\//, '')}`)
  const out: Record<string, Sig | null> = {}
  for (const name of [...names].sort()) out[name] = sig(join(gitDir, name))
  return out
}

/** `.git` of a plain checkout; linked worktrees, submodules and GIT_* overrides always take the full pass. */
function gitDirOf(root: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const overrides = [
    'GIT_DIR',
    'GIT_WORK_TREE',
    'GIT_INDEX_FILE',
    'GIT_OBJECT_DIRECTORY',
    'GIT_COMMON_DIR',
    'GIT_CONFIG',
    'GIT_CONFIG_GLOBAL',
    'GIT_CONFIG_SYSTEM',
    'GIT_CONFIG_NOSYSTEM',
    'GIT_CONFIG_COUNT',
  ]
  if (overrides.some((name) => env[name])) return undefined
  const gitDir = join(root, '.git')
  return lstatSync(gitDir, { throwIfNoEntry: false })?.isDirectory() ? gitDir : undefined
}

const digest = (text: string) => createHash('sha256').update(text).digest('hex')

function git(root: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('git', ['-C', root, ...args], { maxBuffer: 1024 * 1024 * 1024, encoding: 'utf8' }, (error, stdout) =>
      error ? reject(error) : resolve(stdout),
    ),
  )
}

export const changedAgainstIndex = (root: string) => git(root, ['diff-files', '--name-only', '-z'])
export const untrackedFiles = (root: string) => git(root, ['ls-files', '--others', '--exclude-standard', '-z'])

/** What the full pass saw of git, starting with git's files before it asked git anything. */
export interface GitView {
  at: number
  files: Record<string, Sig | null>
  /** Raw `git diff-files --name-only -z` output. */
  changed: string
  /** Raw `git ls-files --others --exclude-standard -z` output. */
  untracked: string
  /** Index entries marked assume-unchanged or skip-worktree: git does not look at them. */
  flagged: string[]
  /** Folders the untracked listing depends on (see watchFolders); undefined when one changed too recently. */
  folders?: Folders
  /** Folders left out of the walk as excluded from sync: the agent's watcher leaves them out too. */
  pruned?: string[]
  /** The global ignore and config files (globalSigs), for the watcher's check; undefined when one changed too recently. */
  global?: [path: string, sig: Sig | null][]
}

/**
 * What `git ls-files --others` depends on besides the index: the entries of
 * every folder it may enter (a folder's mtime moves when an entry is added,
 * removed or renamed) and every ignore-rule source. Taken as a superset:
 * all folders but `.git` and crabbox-excluded ones (nothing under those can
 * reach the manifest), every `.gitignore` in them, and git's global files.
 */
export interface Folders {
  dirs: [path: string, sig: Sig][]
  /** `.gitignore` files in those folders and the global ignore/config files (null: absent). */
  rules: [path: string, sig: Sig | null][]
}

/** A folder's identity: inode, mtime (moves with its entries) and ctime. */
const dirSig = (path: string): Sig | null => {
  const stat = lstatSync(path, { throwIfNoEntry: false })
  return stat?.isDirectory() ? `${stat.ino}:${stat.mtimeMs}:${stat.ctimeMs}` : null
}

/** The mtime in a signature (sigOf or dirSig). */
const mtimeOf = (value: Sig) => {
  const parts = value.split(':')
  return Number(parts.length === 3 ? parts[1] : parts[2])
}

/** Global files holding ignore rules or pointing at them (core.excludesFile lives in a config). */
function globalRules(excludesFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME ?? ''
  const xdg = env.XDG_CONFIG_HOME || join(home, '.config')
  return [
    join(xdg, 'git', 'ignore'),
    join(xdg, 'git', 'config'),
    join(home, '.gitconfig'),
    '/etc/gitconfig',
    ...(excludesFile ? [excludesFile] : []),
  ]
}

/**
 * Walks the folders git's untracked listing may enter; `excluded(dir + '/')`
 * prunes crabbox-excluded ones (listed in `pruned`). `folders` is undefined
 * when one changed too recently; both are when the walk gave up.
 */
export function watchFolders(
  root: string,
  excluded: (dir: string) => boolean,
  excludesFile: string | undefined,
  at: number,
): { folders?: Folders; pruned: string[] } | undefined {
  const dirs: Folders['dirs'] = []
  const pruned: string[] = []
  const rules: Folders['rules'] = globalRules(excludesFile).map((path) => [path, sig(path)])
  const pending = ['']
  while (pending.length > 0) {
    // Past this many folders, stating them all is no longer cheaper than asking git.
    if (dirs.length > 20_000) return undefined
    const rel = pending.pop()!
    const abs = rel ? join(root, rel) : root
    const own = dirSig(abs)
    if (own === null) return undefined
    dirs.push([rel, own])
    let dirents
    try {
      dirents = readdirSync(abs, { withFileTypes: true })
    } catch {
      return undefined
    }
    for (const dirent of dirents) {
      const path = rel ? `${rel}/${dirent.name}` : dirent.name
      if (dirent.isDirectory()) {
        if (dirent.name === '.git') continue
        if (excluded(`${path}/`)) pruned.push(path)
        else pending.push(path)
      } else if (dirent.name === '.gitignore') rules.push([path, sig(join(root, path))])
    }
  }
  // A folder or rule changed within the racy window could change again unseen.
  const recent = (value: Sig | null) => value !== null && mtimeOf(value) >= at - RACY_MS
  if (dirs.some(([, value]) => recent(value)) || rules.some(([, value]) => recent(value))) return { pruned }
  return { folders: { dirs, rules }, pruned }
}

/** The global ignore and config files with their identity, taken at `at`; undefined when one changed within the racy window. */
export function globalSigs(excludesFile: string | undefined, at: number): [string, Sig | null][] | undefined {
  const sigs = globalRules(excludesFile).map((path): [string, Sig | null] => [path, sig(path)])
  return sigs.some(([, value]) => value !== null && mtimeOf(value) >= at - RACY_MS) ? undefined : sigs
}

/** The global ignore and config files are as `recorded` saw them. */
function globalUnchanged(recorded: [string, Sig | null][], excludesFile: string | undefined, env = process.env): boolean {
  const rules = globalRules(excludesFile, env)
  return rules.length === recorded.length && rules.every((path, i) => recorded[i][0] === path && sig(path) === recorded[i][1])
}

function foldersUnchanged(root: string, folders: Folders | undefined, excludesFile: string | undefined): boolean {
  if (!folders) return false
  const rules = globalRules(excludesFile)
  if (rules.some((path, i) => folders.rules[i]?.[0] !== path)) return false
  return (
    folders.dirs.every(([path, value]) => dirSig(path ? join(root, path) : root) === value) &&
    folders.rules.every(([path, value]) => sig(path.startsWith('/') ? path : join(root, path)) === value)
  )
}

/** Taken before any git listing, so a change racing the full pass shows up next time. */
export function beginGitView(root: string, config: Config['sync']): Pick<GitView, 'at' | 'files'> | undefined {
  const gitDir = gitDirOf(root)
  return gitDir ? { at: Date.now(), files: gitFiles(gitDir, config) } : undefined
}

export interface Snapshot {
  v: 1
  /** Names this snapshot for the watcher stamp kept beside it (watch.json). */
  id?: string
  key: string
  files: Record<string, Sig | null>
  changed: string
  untracked: string
  folders?: Folders
  /** Folders excluded from sync (watchFolders): what the agent's watcher leaves out. */
  pruned?: string[]
  /** The global ignore and config files (GitView.global). */
  global?: [path: string, sig: Sig | null][]
  /** Paths git does not vouch for, with their identity (null: absent). */
  own: [path: string, sig: Sig | null][]
  fingerprint: string
  git: GitContext
  /** Id of the manifest stored beside it (stored-manifest.ts), for the incremental pass. */
  manifest?: string
}

export interface Unchanged {
  fingerprint: string
  git: GitContext
  /** Whether git's untracked listing had to run (some folder or ignore rule moved). */
  listedUntracked: boolean
  /** Proved by the connection agent's file watcher: git listed nothing. */
  watched?: boolean
}

/** The `manifest` phase's reason when the watcher proved the checkout unchanged (`--timing-json`). */
export const WATCHED = 'unchanged: the connection agent saw no change since the last check'

/** The `manifest` phase's reason when the watcher named the paths that moved and git listed nothing (`--timing-json`). */
export const NAMED = 'named: the connection agent named the paths that moved since the last check; git listed nothing'

/** The agent's watcher stamp taken before a check. */
export interface WatchTaken {
  id: string
  seq: number
  /** The paths moved since `kept`, when the watcher could name them all. */
  paths?: string[]
  /** The stamp kept for the snapshot (watch.json), read once before this one was asked for. */
  kept?: { id: string; seq: number }
}

/**
 * The checkout moved only where git's own listings say: same HEAD, index,
 * config, refs and excludes, but `git diff-files` or the untracked listing
 * print something else. The next manifest is the stored one with just the
 * paths those listings name looked at again (see manifest-delta.ts).
 */
export interface Moved {
  snapshot: Snapshot
  /** When the check began (before git listed anything): the new view's time. */
  at: number
  files: Record<string, Sig | null>
  /** Raw `git diff-files --name-only -z` now. */
  changed: string
  /** Raw untracked listing now; undefined when no folder moved (the snapshot's listing holds). */
  untracked?: string
  /** The global ignore and config files at `at` (GitView.global). */
  global?: [path: string, sig: Sig | null][]
  /**
   * The agent's watcher named every path that moved since the snapshot's
   * kept stamp: git listed nothing (`changed` is empty); the manifest is the
   * stored one with these paths looked at again (manifest-delta.ts).
   */
  named?: string[]
}

export interface UnchangedCheck {
  snapshot: Promise<Snapshot | undefined>
  unchanged: Promise<Unchanged | undefined>
  /** Set when the check failed only on git's listings: what an incremental manifest needs. */
  moved: Promise<Moved | undefined>
  /** The watcher stamp taken before the check looked at anything; the next snapshot may keep it. */
  watch: Promise<WatchTaken | undefined>
}

/**
 * Starts the local "unchanged since the last fingerprint" check. All local,
 * so `run` starts it before it resolves the lease and opens the connection;
 * this module stays small so that start is early.
 */
export function checkUnchanged(repoRoot: string, config: Config['sync'], options: { checksum?: boolean } = {}): UnchangedCheck {
  const snapshot = config.fingerprint && !options.checksum ? readSnapshot(repoRoot) : Promise.resolve(undefined)
  const watch = snapshot.then((found) => (found ? takeWatch(repoRoot, found) : undefined))
  const verdict = snapshot.then((found): Promise<Verdict> | Verdict => (found ? verify(repoRoot, config, found, watch) : {}))
  return { snapshot, unchanged: verdict.then((v) => v.unchanged), moved: verdict.then((v) => v.moved), watch }
}

const watchPath = (root: string) => join(cacheDir(root), 'watch.json')

/**
 * Asks a running connection agent for its watcher's stamp, leaving out the
 * folders the snapshot's walk pruned, and for the paths moved since the stamp
 * kept for this snapshot.
 */
async function takeWatch(root: string, snapshot: Snapshot): Promise<WatchTaken | undefined> {
  if (!snapshot.pruned) return undefined
  const kept = keptWatch(root, snapshot)
  const { agentWatchStamp } = await import('../../transport/ssh/agent-client.js')
  const taken = await agentWatchStamp(root, snapshot.pruned, kept).catch(() => undefined)
  return taken && { ...taken, kept }
}

/** The agent's own watcher, asked in its process (`Watchers.stamp`). */
export type WatchStamp = (root: string, skip: string[]) => Promise<{ id: string; seq: number } | undefined>

/**
 * The agent lane's check (services/run/on-lane.ts), in the connection agent for a client with
 * environment `env`: unchanged only when the agent's watcher vouches for the last snapshot, as
 * byWatcher decides in a run's own check; anything else is undefined at once, without git (the
 * run's own check in a spare worker then decides).
 */
export async function watchedUnchanged(
  root: string,
  config: Config['sync'],
  stamp: WatchStamp,
  env: NodeJS.ProcessEnv,
): Promise<Unchanged | undefined> {
  const gitDir = gitDirOf(root, env)
  const snapshot = config.fingerprint && !config.checksum && gitDir ? await readSnapshot(root, env) : undefined
  const kept = snapshot?.pruned && keptWatch(root, snapshot)
  if (!snapshot?.pruned || !kept || !gitDir) return undefined
  const taken = await stamp(root, snapshot.pruned)
  return taken && byWatcher(root, config, snapshot, gitDir, { ...taken, kept }, env)
}

/** The stamp kept beside `snapshot` (watch.json), if it is that snapshot's. */
function keptWatch(root: string, snapshot: Snapshot): { id: string; seq: number } | undefined {
  try {
    const kept = JSON.parse(readFileSync(watchPath(root), 'utf8')) as { snapshot?: string; id?: string; seq?: number }
    if (!snapshot.id || kept.snapshot !== snapshot.id || typeof kept.id !== 'string' || typeof kept.seq !== 'number') return undefined
    return { id: kept.id, seq: kept.seq }
  } catch {
    return undefined
  }
}

/** The stamp kept for the snapshot equals `taken`: no event in its folders since a check or pass that vouched for it. */
const watcherVouches = ({ id, seq, kept }: WatchTaken): boolean => kept !== undefined && kept.id === id && kept.seq === seq

/** Keeps `taken` for the snapshot `id`: taken before the state that snapshot vouches for was looked at. */
async function keepWatch(root: string, id: string | undefined, taken: WatchTaken | undefined): Promise<void> {
  if (!id || !taken) return
  const file = watchPath(root)
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify({ snapshot: id, id: taken.id, seq: taken.seq }))
  await rename(tmp, file)
}

const snapshotPath = (root: string) => join(cacheDir(root), 'snapshot.json')

/** The settings a fingerprint depends on besides the checkout. */
const keyOf = (patterns: string[], config: Config['sync']) =>
  digest(JSON.stringify([excludesKey(patterns), config.delete, config.gitSeed, config.baseRef ?? '']))

/** The last snapshot's HEAD and base, to start the runner round trip before it is verified. */
export async function readSnapshot(root: string, env = process.env): Promise<Snapshot | undefined> {
  if (!gitDirOf(root, env)) return undefined
  // The run before may still be writing it (its exit code went out first).
  await awaitRemembered(root)
  try {
    // Read at once, not through libuv's threads: an async read's steps each wait for a turn of the
    // event loop, which the run's own set-up (plan, lease, session) holds for ≈ 5 ms meanwhile.
    const parsed = JSON.parse(readFileSync(snapshotPath(root), 'utf8')) as Snapshot
    return parsed.v === 1 ? parsed : undefined
  } catch {
    return undefined
  }
}

/**
 * The fingerprint of the last full pass when the checkout provably did not
 * change since, else undefined. Costs `git diff-files` (one lstat per tracked
 * file, in C), a stat per folder, and `git ls-files --others` only when a
 * folder or ignore rule moved.
 */
export async function verifySnapshot(root: string, config: Config['sync'], snapshot: Snapshot | undefined): Promise<Unchanged | undefined> {
  return snapshot ? (await verify(root, config, snapshot)).unchanged : undefined
}

type Verdict = { unchanged?: Unchanged; moved?: Moved }

/**
 * Unchanged without git: the watcher saw no event in the snapshot's folders
 * since a check that vouched for it; git's files, the excludes, the global
 * rules and the paths git does not vouch for are stated here.
 */
async function byWatcher(
  root: string,
  config: Config['sync'],
  snapshot: Snapshot,
  gitDir: string,
  taken: WatchTaken,
  env = process.env,
): Promise<Unchanged | undefined> {
  if (!snapshot.global || !watcherVouches(taken)) return undefined
  if (!settingsUnchanged(root, config, snapshot, gitDir)) return undefined
  if (!globalUnchanged(snapshot.global, snapshot.git.excludesFile, env)) return undefined
  if (snapshot.own.some(([path, recorded]) => sig(join(root, path)) !== recorded)) return undefined
  return { fingerprint: snapshot.fingerprint, git: snapshot.git, listedUntracked: false, watched: true }
}

/**
 * Moved without git: the watcher named every path that moved since the stamp
 * kept for the snapshot (it names none past MAX_NAMED, agent-watch.ts). The same trust as byWatcher (git's files, the
 * excludes and settings, the global rules unchanged), and no `.gitignore`
 * among the paths (an ignore rule moved: git decides). The paths git does not
 * vouch for are looked at again too.
 */
async function byNamed(
  root: string,
  config: Config['sync'],
  snapshot: Snapshot,
  gitDir: string,
  taken: WatchTaken,
): Promise<Moved | undefined> {
  // The paths count from the kept stamp (takeWatch asked for them with it).
  const { paths, kept } = taken
  if (!paths || !kept || !snapshot.global || !snapshot.manifest) return undefined
  if (paths.some((path) => path === '.gitignore' || path.endsWith('/.gitignore'))) return undefined
  const at = Date.now()
  if (!settingsUnchanged(root, config, snapshot, gitDir)) return undefined
  const global = globalSigs(snapshot.git.excludesFile, at)
  if (!global || !globalUnchanged(snapshot.global, snapshot.git.excludesFile)) return undefined
  const own = snapshot.own.filter(([path, recorded]) => sig(join(root, path)) !== recorded).map(([path]) => path)
  const named = [...new Set([...paths, ...own])].sort()
  return { snapshot, at, files: gitFiles(gitDir, config), changed: '', global, named }
}

/** The same sync settings and excludes, and git's own files (HEAD, refs, index, config) kept their identity. */
function settingsUnchanged(root: string, config: Config['sync'], snapshot: Snapshot, gitDir: string): boolean {
  if (keyOf(excludePatterns(root, config), config) !== snapshot.key) return false
  const files = gitFiles(gitDir, config)
  const names = Object.keys(files)
  return names.length === Object.keys(snapshot.files).length && names.every((name) => files[name] === snapshot.files[name])
}

/** verifySnapshot, also telling when only git's listings moved (an incremental manifest will do). */
export async function verify(
  root: string,
  config: Config['sync'],
  snapshot: Snapshot,
  watch?: Promise<WatchTaken | undefined>,
): Promise<Verdict> {
  const gitDir = gitDirOf(root)
  if (!gitDir) return {}
  // The stamp comes first: everything this check sees is then newer than it.
  const taken = await watch
  const watched = taken && (await byWatcher(root, config, snapshot, gitDir, taken).catch(() => undefined))
  if (watched) return { unchanged: watched }
  const named = taken?.paths && (await byNamed(root, config, snapshot, gitDir, taken).catch(() => undefined))
  if (named) return { moved: named }
  const at = Date.now()
  const global = globalSigs(snapshot.git.excludesFile, at)
  // No folder changed: git's untracked listing cannot have changed either, so it is not run.
  const listUntracked = !foldersUnchanged(root, snapshot.folders, snapshot.git.excludesFile)
  const listed = Promise.all([changedAgainstIndex(root), listUntracked ? untrackedFiles(root) : undefined])
  listed.catch(() => {})
  const same = async () => {
    if (keyOf(excludePatterns(root, config), config) !== snapshot.key) return {}
    const files = gitFiles(gitDir, config)
    const names = Object.keys(files)
    if (names.length !== Object.keys(snapshot.files).length || names.some((name) => files[name] !== snapshot.files[name])) return {}
    const [changed, untracked] = await listed
    const moved: Moved = { snapshot, at, files, changed, untracked, global }
    if (snapshot.own.some(([path, recorded]) => sig(join(root, path)) !== recorded)) return { moved }
    if (digest(changed) !== snapshot.changed || (untracked !== undefined && digest(untracked) !== snapshot.untracked)) return { moved }
    // git vouched for the snapshot after the stamp was taken: an equal stamp next time needs no git.
    await keepWatch(root, snapshot.id, taken).catch(() => {})
    return { unchanged: { fingerprint: snapshot.fingerprint, git: snapshot.git, listedUntracked: listUntracked } }
  }
  try {
    return await same()
  } catch {
    return {}
  }
}

/**
 * Records the full pass for the next run. Skipped when a path we must stat
 * ourselves changed within the racy window (a second write in the same mtime
 * tick would go unseen).
 */
export async function saveSnapshot(
  manifest: Manifest,
  fingerprint: string,
  config: Config['sync'],
  hashes?: (string | undefined)[],
  watch?: Promise<WatchTaken | undefined>,
): Promise<void> {
  await writeSnapshot(manifest, snapshotOf(manifest, fingerprint, config), hashes, watch)
}

/**
 * What the snapshot of this pass says, decided now (the stat of the paths git calls dirty):
 * `drop` when it cannot vouch for them, undefined when this pass did not look. Decided while
 * the command runs, before its exit code lets the user (or a script) edit again; the writing
 * may come later (src/exit-hold.ts).
 */
export function snapshotOf(manifest: Manifest, fingerprint: string, config: Config['sync']): Snapshot | 'drop' | undefined {
  const view = manifest.gitView
  // No view: this pass did not look (the snapshot it started from is still good, or this is no plain checkout).
  if (!view || !manifest.git) return undefined
  // git compares ctimes to the second: an index written in this same second could still
  // take an in-place edit (same size, mtime put back) that git would call clean.
  const indexMtime = Number(view.files.index?.split(':')[2] ?? 0)
  if (Math.floor(indexMtime / 1000) >= Math.floor(view.at / 1000)) return 'drop'
  const paths = [...view.changed.split('\0'), ...view.untracked.split('\0'), ...view.flagged].filter(Boolean)
  const entries = entriesAt(manifest, paths)
  const deleted = new Set(manifest.deleted)
  const own = new Map<string, Sig | null>()
  for (const path of paths) {
    const entry = entries.get(path)
    if (entry) {
      // Stated again for the ctime; it must still be the file the manifest hashed.
      const now = lstatSync(join(manifest.root, path), { throwIfNoEntry: false })
      // A symlink's entry has size 0 (its target is its content); lstat gives the target's length.
      const sameSize = (now: Stats) => entry.mode === MODE_LINK || now.size === entry.size
      const same = now && now.ino === entry.ino && sameSize(now) && now.mtimeMs === entry.mtimeMs && now.ctimeMs === entry.ctimeMs
      if (!now || !same || entry.mtimeMs >= view.at - RACY_MS) return 'drop'
      own.set(path, sigOf(now))
    } else if (deleted.has(path)) own.set(path, null)
  }
  return {
    v: 1,
    id: randomBytes(9).toString('hex'),
    key: keyOf(manifest.excludes, config),
    files: view.files,
    changed: digest(view.changed),
    untracked: digest(view.untracked),
    folders: view.folders,
    pruned: view.pruned,
    global: view.global,
    own: [...own],
    fingerprint,
    git: withoutTracked(manifest.git),
  }
}

/** The manifest's entries for `paths` (usually a few of many thousands): no map of them all. */
function entriesAt(manifest: Manifest, paths: string[]): Map<string, Manifest['entries'][number]> {
  const wanted = new Set(paths)
  const found = new Map<string, Manifest['entries'][number]>()
  if (wanted.size === 0) return found
  for (const entry of manifest.entries) if (wanted.has(entry.path)) found.set(entry.path, entry)
  return found
}

/** The git facts a snapshot keeps: all but the index's paths, which an incremental manifest builds only when read. */
function withoutTracked(git: GitContext): Snapshot['git'] {
  const kept: Record<string, unknown> = {}
  for (const key of Object.keys(git)) if (key !== 'tracked') kept[key] = git[key as keyof GitContext]
  return kept as Snapshot['git']
}

/** Writes what `snapshotOf` decided, with the stored manifest and the watcher stamp kept for it. */
export async function writeSnapshot(
  manifest: Manifest,
  snapshot: Snapshot | 'drop' | undefined,
  hashes?: (string | undefined)[],
  watch?: Promise<WatchTaken | undefined>,
): Promise<void> {
  const file = snapshotPath(manifest.root)
  // An incremental pass keeps the snapshot it started from when it cannot write one: that one still proves what it proved.
  if (snapshot === 'drop') return manifest.incremental ? undefined : rmFile(file, { force: true })
  const view = manifest.gitView
  if (!snapshot || !view) return
  await mkdir(join(file, '..'), { recursive: true })
  snapshot.manifest = await storeManifest(manifest, view, hashes).catch(() => undefined)
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(snapshot))
  await rename(tmp, file)
  // The stamp was taken before this pass looked at the checkout: no event since means this snapshot still holds.
  await keepWatch(manifest.root, snapshot.id, await watch).catch(() => {})
}
