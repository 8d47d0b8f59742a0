import { execFileSync } from 'node:child_process'
import { chmodSync, lutimesSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { computeFingerprint, hashManifest } from '../../src/services/sync/fingerprint.js'
import { cacheDir } from '../../src/services/sync/hash-cache.js'
import { buildManifest, readGitContext } from '../../src/services/sync/manifest.js'
import { deltaManifest } from '../../src/services/sync/manifest-delta.js'
import { beginGitView, checkUnchanged, readSnapshot, saveSnapshot, verifySnapshot } from '../../src/services/sync/snapshot.js'
import { git, indexSettles, put as putFile } from '../support/fixtures.js'

/** Written (and its folders touched) a minute ago: outside the racy window, so the snapshot may vouch for them. */
const put = (root: string, path: string, content: string) => putFile(root, path, content, { aged: 'tree' })
const config = () => ({ ...defaultConfig().sync })

/** What sync does on a full pass: git view first, manifest, hashes, fingerprint, snapshot. */
async function fullPass(repo: string, c = config()): Promise<string> {
  const view = beginGitView(repo, c)
  const manifest = await buildManifest(repo, c, { git: await readGitContext(repo, c), view })
  const hashed = await hashManifest(manifest)
  const fingerprint = computeFingerprint(manifest, hashed, c)
  await saveSnapshot(manifest, fingerprint, c, hashed.hashes)
  return fingerprint
}
const check = async (repo: string, c = config()) => verifySnapshot(repo, c, await readSnapshot(repo))

/** What sync does when only git's listings moved: the stored manifest plus the paths they name. */
async function deltaPass(repo: string, c = config()) {
  const moved = await checkUnchanged(repo, c).moved
  const manifest = moved && (await deltaManifest(repo, c, moved))
  if (!manifest) return undefined
  const hashed = await hashManifest(manifest)
  const fingerprint = computeFingerprint(manifest, hashed, c)
  await saveSnapshot(manifest, fingerprint, c, hashed.hashes)
  return { manifest, fingerprint, hashedFiles: hashed.hashedFiles }
}

/**
 * What sync does when the agent's watcher named the paths that moved: the
 * stored manifest plus those paths, with no git listing (the check's view of
 * git's files is taken as the named check takes it).
 */
async function namedPass(repo: string, named: string[], c = config()) {
  const snapshot = await readSnapshot(repo)
  const view = beginGitView(repo, c)
  if (!snapshot || !view) return undefined
  const manifest = await deltaManifest(repo, c, { snapshot, ...view, changed: '', global: snapshot.global, named })
  if (!manifest) return undefined
  const hashed = await hashManifest(manifest)
  const fingerprint = computeFingerprint(manifest, hashed, c)
  await saveSnapshot(manifest, fingerprint, c, hashed.hashes)
  return { manifest, fingerprint }
}

/** The parts of a manifest both passes must agree on. */
const shape = (m: Awaited<ReturnType<typeof buildManifest>>) => ({
  entries: m.entries.map(({ path, mode, size, target }) => ({ path, mode, size, target })),
  deleted: m.deleted,
  rejected: m.rejected,
  tracked: [...(m.git?.tracked ?? [])].sort(),
  files: m.files,
  bytes: m.bytes,
})
const quick = async (repo: string, c = config()) => (await check(repo, c))?.fingerprint

describe('unchanged-checkout snapshot', () => {
  const state = mkdtempSync(join(tmpdir(), 'crabbox-snapshot-state-'))
  const saved = process.env.XDG_STATE_HOME
  const repos: string[] = []
  beforeAll(() => {
    process.env.XDG_STATE_HOME = state
  })
  afterAll(() => {
    if (saved === undefined) delete process.env.XDG_STATE_HOME
    else process.env.XDG_STATE_HOME = saved
    for (const dir of [state, ...repos]) rmSync(dir, { recursive: true, force: true })
  })

  async function repo(): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-snapshot-'))
    repos.push(dir)
    git(dir, 'init', '-q', '-b', 'main')
    put(dir, '.gitignore', 'tmp/\n*.log\nsub/.gitignore\n')
    put(dir, 'logs/a.log', 'a folder holding only ignored files\n')
    put(dir, 'sub/.gitignore', '*.txt\n')
    put(dir, 'sub/hidden.txt', 'ignored by an ignored .gitignore\n')
    put(dir, 'secret.txt', 'ignored by .git/info/exclude\n')
    put(dir, '.git/info/exclude', 'secret.txt\n')
    for (let i = 0; i < 20; i++) put(dir, `src/f${i}.txt`, `${i}\n`)
    git(dir, 'add', '-A')
    git(dir, 'commit', '-qm', 'init')
    put(dir, 'notes.txt', 'untracked, not ignored\n')
    put(dir, 'src/f3.txt', '3 edited, not staged\n')
    await indexSettles(dir)
    return dir
  }

  it('vouches for an unchanged checkout, also through churn in ignored folders and ignored files', async () => {
    const dir = await repo()
    const fingerprint = await fullPass(dir)
    // Settled folders: git's untracked listing need not even run.
    expect(await check(dir)).toMatchObject({ fingerprint, listedUntracked: false })
    put(dir, 'tmp/build/out.bin', 'ignored churn\n')
    put(dir, 'src/debug.log', 'ignored file\n')
    expect(await quick(dir)).toBe(fingerprint)
    expect(await fullPass(dir)).toBe(fingerprint)
  })

  it('an untracked non-ignored file, an edit to a tracked, changed or untracked file, and a commit each invalidate it', async () => {
    const dir = await repo()
    // [what, change, whether the checkout's content (so the fingerprint) changes too]
    const changes: Array<[string, () => void, boolean]> = [
      ['new untracked file', () => put(dir, 'src/new.txt', 'new\n'), true],
      ['new file in a new folder', () => put(dir, 'deep/er/new.txt', 'new\n'), true],
      ['edit to a clean tracked file', () => put(dir, 'src/f1.txt', '1 edited\n'), true],
      ['edit to a tracked file already changed', () => put(dir, 'src/f3.txt', '3 edited again\n'), true],
      ['edit to an untracked file', () => put(dir, 'notes.txt', 'notes edited\n'), true],
      ['mode change', () => execFileSync('chmod', ['+x', join(dir, 'src/f2.txt')]), true],
      ['deleted tracked file', () => rmSync(join(dir, 'src/f4.txt')), true],
      ['staged change (same worktree)', () => git(dir, 'add', 'src/f3.txt'), false],
      ['commit', () => git(dir, 'commit', '-qam', 'more'), true],
      ['.crabboxignore', () => put(dir, '.crabboxignore', 'notes.txt\n'), true],
      ['new file in a folder holding only ignored files', () => put(dir, 'logs/new.txt', 'new\n'), true],
      ['an ignored .gitignore stops ignoring', () => put(dir, 'sub/.gitignore', '# nothing\n'), true],
      ['.git/info/exclude stops ignoring', () => put(dir, '.git/info/exclude', '\n'), true],
    ]
    let before = await fullPass(dir)
    for (const [what, change, content] of changes) {
      expect(await quick(dir), `before: ${what}`).toBe(before)
      change()
      expect(await quick(dir), what).toBeUndefined()
      await indexSettles(dir)
      const after = await fullPass(dir)
      if (content) expect(after, what).not.toBe(before)
      else expect(after, what).toBe(before)
      before = after
    }
  })

  it('an edit that keeps the size and the mtime still invalidates it (the ctime moved)', async () => {
    const dir = await repo()
    const path = join(dir, 'src/f5.txt')
    const fingerprint = await fullPass(dir)
    expect(await quick(dir)).toBe(fingerprint)
    const { atime, mtime } = statSync(path)
    writeFileSync(path, '6\n')
    utimesSync(path, atime, mtime)
    expect(await quick(dir)).toBeUndefined()
    expect(await fullPass(dir)).not.toBe(fingerprint)
  })

  it('settings that change the fingerprint never reuse it', async () => {
    const dir = await repo()
    await fullPass(dir)
    expect(await quick(dir, { ...config(), delete: false })).toBeUndefined()
    expect(await quick(dir, { ...config(), exclude: ['src/f1.txt'] })).toBeUndefined()
  })

  it('a file changed within the racy window, or an index written this second, is not vouched for', async () => {
    const dir = await repo()
    writeFileSync(join(dir, 'notes.txt'), 'just now\n')
    await fullPass(dir)
    expect(await quick(dir)).toBeUndefined()
    put(dir, 'notes.txt', 'settled\n')
    git(dir, 'add', 'notes.txt')
    await fullPass(dir)
    expect(await quick(dir)).toBeUndefined()
    await indexSettles(dir)
    expect(await quick(dir)).toBeUndefined()
    const fingerprint = await fullPass(dir)
    expect(await quick(dir)).toBe(fingerprint)
  })

  it('a small change is applied to the stored manifest: the same manifest and fingerprint as a full pass', async () => {
    const dir = await repo()
    const aged = (path: string) => {
      const old = new Date(Date.now() - 60_000)
      utimesSync(join(dir, path), old, old)
    }
    // [what, change]: each leaves the index alone, so only git's listings (and the paths they name) move.
    const changes: Array<[string, () => void]> = [
      ['edit to a clean tracked file', () => put(dir, 'src/f1.txt', '1 edited\n')],
      ['edit to a tracked file already changed', () => put(dir, 'src/f3.txt', '3 edited again\n')],
      ['edit to an untracked file', () => put(dir, 'notes.txt', 'notes edited\n')],
      ['new untracked file in a new folder', () => put(dir, 'deep/er/new.txt', 'new\n')],
      ['deleted tracked file', () => rmSync(join(dir, 'src/f4.txt'))],
      ['deleted untracked file', () => rmSync(join(dir, 'deep/er/new.txt'))],
      ['rename of a tracked file', () => (renameSync(join(dir, 'src/f5.txt'), join(dir, 'src/f5-renamed.txt')), aged('src'))],
      ['mode change', () => chmodSync(join(dir, 'src/f2.txt'), 0o755)],
      ['mtime-only touch', () => aged('src/f6.txt')],
      [
        'mtime-only touch back to the same stamp, content edited (ctime moved)',
        () => {
          const { atime, mtime } = statSync(join(dir, 'src/f7.txt'))
          writeFileSync(join(dir, 'src/f7.txt'), '8\n')
          utimesSync(join(dir, 'src/f7.txt'), atime, mtime)
        },
      ],
      [
        'file replaced by a symlink',
        () => {
          rmSync(join(dir, 'src/f8.txt'))
          symlinkSync('f9.txt', join(dir, 'src/f8.txt'))
          const old = new Date(Date.now() - 60_000)
          lutimesSync(join(dir, 'src/f8.txt'), old, old)
          aged('src')
        },
      ],
      ['new file crabbox excludes', () => put(dir, 'node_modules/x/i.js', 'excluded\n')],
    ]
    for (const [what, change] of changes) {
      await indexSettles(dir)
      const before = await fullPass(dir)
      expect(await quick(dir), `settled before: ${what}`).toBe(before)
      change()
      const delta = await deltaPass(dir)
      expect(delta, what).toBeDefined()
      const full = await buildManifest(dir, config())
      expect(shape(delta!.manifest), what).toEqual(shape(full))
      expect(delta!.fingerprint, what).toBe(computeFingerprint(full, await hashManifest(full), config()))
    }
    // A new ignored file is no change at all.
    await indexSettles(dir)
    const settled = await fullPass(dir)
    put(dir, 'src/more.log', 'ignored\n')
    expect(await quick(dir)).toBe(settled)
    // A change to the index (staging, committing) is not a small change: the full pass runs.
    put(dir, 'src/f10.txt', '10 edited\n')
    await indexSettles(dir)
    await fullPass(dir)
    git(dir, 'add', 'src/f10.txt')
    expect(await checkUnchanged(dir, config()).moved).toBeUndefined()
  })

  it('successive small changes chain on the stored manifest, and an unchanged checkout after one is still vouched for', async () => {
    const dir = await repo()
    await indexSettles(dir)
    await fullPass(dir)
    for (let i = 0; i < 3; i++) {
      put(dir, 'src/f1.txt', `edit ${i}\n`)
      // The stored manifest carries every entry's hash: the hash cache's file is not needed.
      rmSync(join(cacheDir(dir), 'hashes.json'), { force: true })
      const delta = await deltaPass(dir)
      expect(delta?.hashedFiles).toBe(1)
      const full = await buildManifest(dir, config())
      expect(delta?.fingerprint).toBe(computeFingerprint(full, await hashManifest(full), config()))
      // Settled (aged): the incremental pass wrote a snapshot of its own, which vouches for this state.
      expect(await quick(dir)).toBe(delta?.fingerprint)
    }
    // Written just now (racy): no snapshot of this state, but the older one still serves as the base.
    writeFileSync(join(dir, 'src/f2.txt'), 'fresh\n')
    const fresh = await deltaPass(dir)
    expect(fresh).toBeDefined()
    expect(await quick(dir)).toBeUndefined()
    writeFileSync(join(dir, 'src/f2.txt'), 'fresh again\n')
    const again = await deltaPass(dir)
    const full = await buildManifest(dir, config())
    expect(again?.fingerprint).toBe(computeFingerprint(full, await hashManifest(full), config()))
  })

  it('the paths the watcher names are applied to the stored manifest without git: the same manifest and fingerprint as a full pass', async () => {
    const dir = await repo()
    put(dir, 'tmp/keep.txt', 'an ignored folder\n')
    const many = Array.from({ length: 70 }, (_, i) => `src/many-${i}.txt`)
    // [what, change, the paths the watcher names]: no folder added or removed (that rebuilds the watch: git decides).
    const changes: Array<[string, () => void, string[]]> = [
      ['edit to a clean tracked file', () => put(dir, 'src/f1.txt', '1 edited\n'), ['src/f1.txt']],
      ['edit to a tracked file already changed', () => put(dir, 'src/f3.txt', '3 edited again\n'), ['src/f3.txt']],
      ['edit to an untracked file', () => put(dir, 'notes.txt', 'notes edited\n'), ['notes.txt']],
      ['new untracked file', () => put(dir, 'src/new.txt', 'new\n'), ['src/new.txt']],
      ['deleted untracked file', () => rmSync(join(dir, 'src/new.txt')), ['src/new.txt']],
      ['deleted tracked file', () => rmSync(join(dir, 'src/f4.txt')), ['src/f4.txt']],
      [
        'rename of a tracked file',
        () => renameSync(join(dir, 'src/f5.txt'), join(dir, 'src/f5-renamed.txt')),
        ['src/f5-renamed.txt', 'src/f5.txt'],
      ],
      ['mode change', () => chmodSync(join(dir, 'src/f2.txt'), 0o755), ['src/f2.txt']],
      [
        'mtime-only touch',
        () => utimesSync(join(dir, 'src/f6.txt'), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000)),
        ['src/f6.txt'],
      ],
      ['new ignored file', () => put(dir, 'src/more.log', 'ignored\n'), ['src/more.log']],
      ['new file in an ignored folder', () => put(dir, 'tmp/new.txt', 'ignored\n'), ['tmp/new.txt']],
      ['a path named that did not change', () => undefined, ['src/f9.txt', 'gone.txt']],
      [
        'more than 16 paths named, one edited',
        () => put(dir, 'src/f10.txt', '10 edited\n'),
        Array.from({ length: 20 }, (_, i) => `src/f${i}.txt`),
      ],
      ['seventy new untracked files', () => many.forEach((path, i) => put(dir, path, `many ${i}\n`)), many],
      ['more than 64 paths named that the stored manifest holds, one edited', () => put(dir, many[7], 'many edited\n'), many],
    ]
    for (const [what, change, named] of changes) {
      await indexSettles(dir)
      const before = await fullPass(dir)
      expect(await quick(dir), `settled before: ${what}`).toBe(before)
      change()
      const pass = await namedPass(dir, named)
      expect(pass, what).toBeDefined()
      const full = await buildManifest(dir, config())
      expect(shape(pass!.manifest), what).toEqual(shape(full))
      expect(pass!.fingerprint, what).toBe(computeFingerprint(full, await hashManifest(full), config()))
    }
    // Chained: named passes one after another, then git decides again (the agent went away): still the full pass's manifest.
    await indexSettles(dir)
    await fullPass(dir)
    put(dir, 'src/f11.txt', 'named once\n')
    expect(await namedPass(dir, ['src/f11.txt'])).toBeDefined()
    put(dir, 'src/f12.txt', 'named twice\n')
    expect(await namedPass(dir, ['src/f12.txt'])).toBeDefined()
    put(dir, 'src/f13.txt', 'seen by git\n')
    const delta = await deltaPass(dir)
    const full = await buildManifest(dir, config())
    expect(shape(delta!.manifest)).toEqual(shape(full))
    expect(delta!.fingerprint).toBe(computeFingerprint(full, await hashManifest(full), config()))
  })
})
