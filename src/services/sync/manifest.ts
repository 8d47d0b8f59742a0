import { execFile } from 'node:child_process'
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Config } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import { formatBytes, plural } from '../../ui/format.js'
import { loadExcludes } from './excludes.js'
import { HashCache, excludesKey } from './hash-cache.js'
import { changedAgainstIndex, globalSigs, watchFolders, type GitView } from './snapshot.js'

const run = promisify(execFile)

import { MODE_EXEC, MODE_FILE, MODE_LINK } from './modes.js'

export { MODE_EXEC, MODE_FILE, MODE_LINK }

export interface ManifestEntry {
  /** Relative, `/`-separated, validated by `checkPath`. */
  path: string
  mode: typeof MODE_FILE | typeof MODE_EXEC | typeof MODE_LINK
  size: number
  mtimeMs: number
  ctimeMs: number
  ino: number
  /** Symlink target, verbatim. */
  target?: string
}

export interface GitInfo {
  head?: string
  /** Short branch name when HEAD is on a branch. */
  branch?: string
  originUrl?: string
  /** `core.excludesFile` when set (an ignore-rule source for untracked files). */
  excludesFile?: string
  /** Base branch name without `origin/`, e.g. `main`. */
  baseRef?: string
  baseSha?: string
  /** Every path in the index (tracked), for the mass-deletion guard. */
  tracked: Set<string>
}

export interface Manifest {
  root: string
  git?: GitInfo
  /** Sorted by path. */
  entries: ManifestEntry[]
  /** Tracked files missing from the worktree, plus staged deletions. */
  deleted: string[]
  /** Paths left out for safety, with the reason. */
  rejected: { path: string; reason: string }[]
  excludes: string[]
  files: number
  bytes: number
  /** The local hash cache, loaded once for the manifest and the hashing that follows. */
  cache: HashCache
  /**
   * Content hashes already known for the entries as they stand (same order;
   * undefined where not known): an incremental manifest carries the stored
   * ones, so hashing looks up no cache for the entries it kept.
   */
  known?: (string | undefined)[]
  /** What git reported while this manifest was built, for the next run's unchanged check (snapshot.ts). */
  gitView?: GitView
  /** Built from the stored manifest plus what git's listings named (manifest-delta.ts), not by a full pass. */
  incremental?: boolean
}

/** Why a relative path may not be synced, or undefined when it is safe. */
export function checkPath(path: string): string | undefined {
  if (path === '' || path.startsWith('/')) return 'absolute or empty path'
  if (path.includes('\0')) return 'NUL in path'
  for (const segment of path.split('/')) {
    if (segment === '..') return 'path escapes the workdir (..)'
    if (segment === '' || segment === '.') return 'non-canonical path'
  }
  return undefined
}

async function git(root: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await run('git', ['-C', root, ...args], { maxBuffer: 1024 * 1024 * 1024, encoding: 'utf8' })
    return stdout
  } catch {
    return undefined
  }
}

const split0 = (text: string | undefined) => (text ? text.split('\0').filter(Boolean) : [])
const line = (text: string | undefined) => text?.trim() || undefined

/**
 * True when `root` is the top of a git worktree: it holds a `.git` folder with
 * a HEAD, or a `.git` file (linked worktrees, submodules). Looked up on disk:
 * a `git rev-parse` costs a process spawn.
 */
export async function isGitRoot(root: string): Promise<boolean> {
  const dotGit = lstatSync(join(root, '.git'), { throwIfNoEntry: false })
  if (!dotGit) return false
  return dotGit.isFile() || lstatSync(join(root, '.git', 'HEAD'), { throwIfNoEntry: false }) !== undefined
}

/** The repository root for `cwd`: the git toplevel, else `cwd` itself. */
export async function findRepoRoot(cwd: string): Promise<string> {
  return line(await git(cwd, ['rev-parse', '--show-toplevel'])) ?? cwd
}

export type GitContext = Omit<GitInfo, 'tracked'>

/**
 * HEAD, branch, origin and base of the checkout at `repoRoot`, or undefined
 * outside git. Cheap (one shell running four git calls): sync starts its runner
 * round trip with it while the manifest is still being built.
 */
export async function readGitContext(repoRoot: string, config: Config['sync']): Promise<GitContext | undefined> {
  return (await isGitRoot(repoRoot)) ? gitInfo(repoRoot, config) : undefined
}

async function gitInfo(root: string, config: Config['sync']): Promise<GitContext> {
  // One shell for the four questions (a spawn costs more than the git calls); one for-each-ref
  // answers origin/HEAD and every origin branch. Answers are NUL-separated; each may be empty.
  const script =
    'git rev-parse -q --verify "HEAD^{commit}"; printf "\\0"; git symbolic-ref -q --short HEAD; printf "\\0"; git config --get remote.origin.url; printf "\\0"; git for-each-ref --format="%(refname) %(objectname) %(symref)" refs/remotes/origin/; printf "\\0"; git config --path --get core.excludesFile'
  const [head, branch, originUrl, refs, excludesFile] = await new Promise<string[]>((resolve) =>
    execFile('sh', ['-c', script], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (_error, stdout) =>
      resolve((stdout ?? '').split('\0')),
    ),
  )
  const origin = new Map<string, string>()
  let originHead: string | undefined
  for (const row of (refs ?? '').split('\n')) {
    const [ref, sha, symref] = row.split(' ')
    if (!ref) continue
    const name = ref.replace(/^refs\/remotes\/origin\//, '')
    if (name === 'HEAD') originHead = symref?.replace(/^refs\/remotes\/origin\//, '')
    else origin.set(name, sha)
  }
  let baseRef = config.baseRef?.replace(/^origin\//, '') || originHead
  // No origin/HEAD recorded (common after `git remote add`): fall back to the usual names.
  if (!baseRef) baseRef = ['main', 'master'].find((name) => origin.has(name))
  const baseSha = baseRef ? origin.get(baseRef) : undefined
  return {
    head: line(head),
    branch: line(branch),
    originUrl: line(originUrl),
    baseRef: baseSha ? baseRef : config.baseRef,
    baseSha,
    excludesFile: line(excludesFile),
  }
}

/** Folder walk for checkouts outside git: same excludes, symlinks recorded, never followed. */
function walk(root: string, ignores: (path: string) => boolean): string[] {
  const out: string[] = []
  const visit = (rel: string) => {
    for (const dirent of readdirSync(rel ? join(root, rel) : root, { withFileTypes: true })) {
      const path = rel ? `${rel}/${dirent.name}` : dirent.name
      if (dirent.isDirectory()) {
        if (!ignores(`${path}/`)) visit(path)
      } else if (!ignores(path)) out.push(path)
    }
  }
  visit('')
  return out
}

/** Memoised "is this directory a real directory (not a symlink)" for the through-symlink check. */
export function realDirCheck(repoRoot: string): (rel: string) => boolean {
  const realDir = new Map<string, boolean>()
  return (rel) => {
    let known = realDir.get(rel)
    if (known === undefined) {
      try {
        known = lstatSync(join(repoRoot, rel)).isDirectory()
      } catch {
        known = false
      }
      realDir.set(rel, known)
    }
    return known
  }
}

/** The manifest entry of a file or symlink; directories here are submodules (gitlinks), and sockets and devices never travel. */
export function manifestEntry(repoRoot: string, path: string, stat: Stats): ManifestEntry | undefined {
  const times = { mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs, ino: stat.ino }
  if (stat.isSymbolicLink()) return { path, mode: MODE_LINK, size: 0, ...times, target: readlinkSync(join(repoRoot, path)) }
  if (stat.isFile()) return { path, mode: stat.mode & 0o100 ? MODE_EXEC : MODE_FILE, size: stat.size, ...times }
  return undefined
}

/**
 * What `crabbox run` would put on the runner: tracked plus untracked
 * non-ignored files (git), minus excludes; stats but no content hashes.
 */
export async function buildManifest(
  repoRoot: string,
  config: Config['sync'],
  context?: { git: GitContext | undefined; view?: Pick<GitView, 'at' | 'files'> },
): Promise<Manifest> {
  const excludes = loadExcludes(repoRoot, config)
  const cache = await HashCache.load(repoRoot)
  const ignores = (path: string) => excludes.matcher.ignores(path)
  const key = excludesKey(excludes.patterns)
  let candidates: string[]
  let gitData: GitInfo | undefined
  let deleted: string[] = []
  let gitView: GitView | undefined

  const known = context ? context.git : undefined
  if (context ? known !== undefined : await isGitRoot(repoRoot)) {
    const view = context?.view
    // Before git lists anything, like the view's git files: a change racing this pass shows next time.
    const excludesFile = (known ?? undefined)?.excludesFile
    const walked = view ? watchFolders(repoRoot, ignores, excludesFile, view.at) : undefined
    const global = view ? globalSigs(excludesFile, view.at) : undefined
    const [tagged, others, stagedDeletes, info, changed] = await Promise.all([
      // -v tags each path; lowercase (assume-unchanged) and S (skip-worktree) are paths git stops looking at.
      git(repoRoot, ['ls-files', '--cached', '-v', '-z']),
      git(repoRoot, ['ls-files', '--others', '--exclude-standard', '-z']),
      git(repoRoot, ['diff', '--cached', '--name-only', '--diff-filter=D', '-z']),
      known ?? gitInfo(repoRoot, config),
      view ? changedAgainstIndex(repoRoot).catch(() => undefined) : undefined,
    ])
    if (tagged === undefined || others === undefined) {
      throw new CrabboxError(`git ls-files failed in ${repoRoot}`, {
        exit: 'sync',
        hint: 'Check that `git status` works in this checkout.',
      })
    }
    const cached: string[] = []
    const flagged: string[] = []
    for (const line of split0(tagged)) {
      const path = line.slice(2)
      cached.push(path)
      if (line[0] === 'S' || (line[0] >= 'a' && line[0] <= 'z')) flagged.push(path)
    }
    const tracked = new Set(cached)
    for (const path of split0(stagedDeletes)) tracked.add(path)
    gitData = { ...info, tracked }
    candidates = [...new Set([...cached, ...split0(others)])]
    deleted = split0(stagedDeletes)
    if (view && changed !== undefined)
      gitView = { ...view, changed, untracked: others, flagged, folders: walked?.folders, pruned: walked?.pruned, global }
  } else {
    candidates = walk(repoRoot, ignores)
  }

  const entries: ManifestEntry[] = []
  const rejected: Manifest['rejected'] = []
  const isRealDir = realDirCheck(repoRoot)

  for (const path of candidates) {
    const unsafe = checkPath(path)
    if (unsafe) {
      rejected.push({ path, reason: unsafe })
      continue
    }
    if (!cache.includedBefore(path, key) && ignores(path)) continue
    let parentOk = true
    for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) {
      if (!isRealDir(path.slice(0, i))) {
        parentOk = false
        break
      }
    }
    let stat: Stats
    try {
      stat = lstatSync(`${repoRoot}/${path}`)
    } catch {
      // Tracked but gone from the worktree: a local deletion.
      if (gitData?.tracked.has(path)) deleted.push(path)
      continue
    }
    if (!parentOk) {
      rejected.push({ path, reason: 'path goes through a symlink' })
      continue
    }
    const entry = manifestEntry(repoRoot, path, stat)
    if (entry) entries.push(entry)
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  deleted = [...new Set(deleted)].sort()
  let bytes = 0
  for (const entry of entries) bytes += entry.size
  return {
    root: repoRoot,
    git: gitData,
    entries,
    deleted,
    rejected,
    excludes: excludes.patterns,
    files: entries.length,
    bytes,
    cache,
    gitView,
  }
}

export interface SizeCheck {
  warnings: string[]
}

/**
 * Preflight before anything is sent: warn over `warnFiles/warnBytes`, stop
 * (exit 6) over `failFiles/failBytes` unless the user said the size is fine.
 */
export function checkSize(
  manifest: Manifest,
  config: Config['sync'],
  options: { forceLarge?: boolean; env?: NodeJS.ProcessEnv } = {},
): SizeCheck {
  const env = options.env ?? process.env
  const allowed = options.forceLarge || config.allowLarge || /^(1|true|yes|on)$/i.test(env.CRABBOX_SYNC_ALLOW_LARGE ?? '')
  const summary = `${plural(manifest.files, 'file')}, ${formatBytes(manifest.bytes)}`
  const overFail = manifest.files >= config.failFiles || manifest.bytes >= config.failBytes
  if (overFail && !allowed) {
    throw new CrabboxError(`sync candidate is too large: ${summary} (limits ${config.failFiles} files, ${formatBytes(config.failBytes)})`, {
      exit: 'sync',
      code: 'sync_too_large',
      hint: 'Run `crabbox sync-plan` to see the largest files and folders, exclude them in .crabboxignore or sync.exclude, or pass --force-sync-large.',
    })
  }
  const warnings: string[] = []
  if (manifest.files >= config.warnFiles || manifest.bytes >= config.warnBytes || overFail) {
    warnings.push(`large sync candidate: ${summary}; see \`crabbox sync-plan\``)
  }
  return { warnings }
}
