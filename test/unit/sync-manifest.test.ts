import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { computeFingerprint, hashManifest } from '../../src/services/sync/fingerprint.js'
import { buildManifest, checkPath, checkSize, MODE_EXEC, MODE_LINK } from '../../src/services/sync/manifest.js'
import { massDeletionGuard, planSync } from '../../src/services/sync/prune.js'
import { encodeRecord, parseRecords } from '../../src/services/sync/records.js'
import { summarizeManifest } from '../../src/services/sync/summary.js'
import { git, put } from '../support/fixtures.js'

const config = () => ({ ...defaultConfig().sync })
const paths = (manifest: { entries: { path: string }[] }) => manifest.entries.map((entry) => entry.path)

describe('sync manifest', () => {
  const state = mkdtempSync(join(tmpdir(), 'crabbox-sync-state-'))
  const saved = process.env.XDG_STATE_HOME
  beforeAll(() => {
    process.env.XDG_STATE_HOME = state
  })
  afterAll(() => {
    if (saved === undefined) delete process.env.XDG_STATE_HOME
    else process.env.XDG_STATE_HOME = saved
    rmSync(state, { recursive: true, force: true })
  })

  it('holds tracked and untracked non-ignored files, minus default, configured and .crabboxignore excludes', async () => {
    const repo = mkdtempSync(join(tmpdir(), 'crabbox-manifest-'))
    git(repo, 'init', '-q')
    put(repo, 'src/app.ts', 'app\n')
    put(repo, 'dist/out.js', 'tracked but excluded by default\n')
    put(repo, '.gitignore', '*.log\n')
    put(repo, '.crabboxignore', '# comment\nfixtures/big/\n!fixtures/big/keep.txt\n')
    put(repo, 'fixtures/big/blob', 'x')
    put(repo, 'docs/private.md', 'excluded by sync.exclude\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'init')
    put(repo, 'new.ts', 'untracked\n')
    put(repo, 'debug.log', 'gitignored\n')
    put(repo, 'node_modules/x/index.js', 'default exclude\n')
    put(repo, 'pkg/node_modules/y/index.js', 'nested default exclude\n')
    put(repo, 'apps/web/.build/o', 'glob default exclude\n')
    const manifest = await buildManifest(repo, { ...config(), exclude: ['docs/private.md'] })
    expect(paths(manifest)).toEqual(['.crabboxignore', '.gitignore', 'new.ts', 'src/app.ts'])
    expect(manifest.git?.head).toMatch(/^[0-9a-f]{40}$/)
    expect(manifest.files).toBe(4)
  })

  it('lists tracked files deleted locally, staged or not', async () => {
    const repo = mkdtempSync(join(tmpdir(), 'crabbox-manifest-'))
    git(repo, 'init', '-q')
    put(repo, 'a.txt', 'a\n')
    put(repo, 'b.txt', 'b\n')
    put(repo, 'c.txt', 'c\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'init')
    rmSync(join(repo, 'a.txt'))
    git(repo, 'rm', '-q', 'b.txt')
    const manifest = await buildManifest(repo, config())
    expect(manifest.deleted).toEqual(['a.txt', 'b.txt'])
    expect(paths(manifest)).toEqual(['c.txt'])
    expect(summarizeManifest(manifest, 5).deletedTracked).toBe(2)
  })

  it('walks a folder outside git with the same excludes, recording symlinks without following them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-manifest-'))
    put(dir, 'a/b.txt', 'b\n')
    put(dir, 'run.sh', '#!/bin/sh\n')
    chmodSync(join(dir, 'run.sh'), 0o755)
    put(dir, 'node_modules/m.js', 'm\n')
    put(dir, '.git/config', 'not a repo, still excluded\n')
    symlinkSync('/etc', join(dir, 'etc-link'))
    const manifest = await buildManifest(dir, config())
    expect(manifest.git).toBeUndefined()
    expect(paths(manifest)).toEqual(['a/b.txt', 'etc-link', 'run.sh'])
    expect(manifest.entries.find((e) => e.path === 'run.sh')?.mode).toBe(MODE_EXEC)
    expect(manifest.entries.find((e) => e.path === 'etc-link')).toMatchObject({ mode: MODE_LINK, target: '/etc' })
  })

  it('rejects absolute paths, .. and paths through symlinks', async () => {
    expect(checkPath('/etc/passwd')).toMatch(/absolute/)
    expect(checkPath('a/../../x')).toMatch(/\.\./)
    expect(checkPath('a//b')).toMatch(/non-canonical/)
    expect(checkPath('ok/-dash name')).toBeUndefined()
    const repo = mkdtempSync(join(tmpdir(), 'crabbox-manifest-'))
    git(repo, 'init', '-q')
    put(repo, 'real/file.txt', 'x\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'init')
    // The tracked directory becomes a symlink: its tracked file is now reached through it.
    rmSync(join(repo, 'real'), { recursive: true })
    mkdirSync(join(repo, 'elsewhere'))
    put(repo, 'elsewhere/file.txt', 'y\n')
    symlinkSync('elsewhere', join(repo, 'real'))
    const manifest = await buildManifest(repo, config())
    expect(manifest.rejected).toEqual([{ path: 'real/file.txt', reason: 'path goes through a symlink' }])
    expect(paths(manifest)).toEqual(['elsewhere/file.txt', 'real'])
  })

  it('warns over warn limits and stops with exit 6 over fail limits unless forced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-manifest-'))
    put(dir, 'a', '12345')
    put(dir, 'b', '12345')
    const manifest = await buildManifest(dir, config())
    expect(checkSize(manifest, { ...config(), warnFiles: 2 }).warnings[0]).toMatch(/large sync candidate: 2 files/)
    expect(() => checkSize(manifest, { ...config(), failBytes: 10 })).toThrow(expect.objectContaining({ exitCode: 6 }))
    expect(checkSize(manifest, { ...config(), failBytes: 10 }, { forceLarge: true }).warnings).toHaveLength(1)
    expect(() => checkSize(manifest, { ...config(), failFiles: 2, allowLarge: true })).not.toThrow()
    expect(() => checkSize(manifest, { ...config(), failFiles: 2 }, { env: { CRABBOX_SYNC_ALLOW_LARGE: '1' } })).not.toThrow()
  })

  it('fingerprint: warm recompute reads no file; content, mode, new files and settings change it; ignored churn does not', async () => {
    const repo = mkdtempSync(join(tmpdir(), 'crabbox-manifest-'))
    git(repo, 'init', '-q')
    put(repo, '.gitignore', 'tmp/\n')
    for (let i = 0; i < 50; i++) put(repo, `f${i}.txt`, `${i}\n`)
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'init')
    // Old mtimes, so the racy-mtime guard lets the cache keep them.
    const old = new Date(Date.now() - 60_000)
    for (let i = 0; i < 50; i++) utimesSync(join(repo, `f${i}.txt`), old, old)
    const fp = async (c = config()) => {
      const manifest = await buildManifest(repo, c)
      const hashed = await hashManifest(manifest)
      return { fingerprint: computeFingerprint(manifest, hashed, c), hashed }
    }
    const first = await fp()
    expect(first.hashed.hashedFiles).toBe(51)
    const warm = await fp()
    expect(warm.hashed.hashedFiles).toBe(1) // only .gitignore, written just now
    expect(warm.fingerprint).toBe(first.fingerprint)

    put(repo, 'tmp/churn', 'ignored\n')
    expect((await fp()).fingerprint).toBe(first.fingerprint)
    put(repo, 'f1.txt', '1 changed\n')
    const edited = await fp()
    expect(edited.fingerprint).not.toBe(first.fingerprint)
    chmodSync(join(repo, 'f2.txt'), 0o755)
    const moded = await fp()
    expect(moded.fingerprint).not.toBe(edited.fingerprint)
    put(repo, 'untracked.txt', 'new\n')
    const added = await fp()
    expect(added.fingerprint).not.toBe(moded.fingerprint)
    expect((await fp({ ...config(), delete: false })).fingerprint).not.toBe(added.fingerprint)
  })
})

describe('runner record and sync plan', () => {
  it('later records win, removals drop, an interrupted last record is ignored', () => {
    const data =
      encodeRecord('aa', 0o100644, 'x y.txt') +
      encodeRecord('bb', 0o100755, 'run.sh') +
      encodeRecord('-', 0o100644, 'x y.txt') +
      encodeRecord('?', 0o100755, 'run.sh') +
      'cc 100644 half-writ'
    expect([...parseRecords(data)]).toEqual([['run.sh', { hash: '?', mode: 0o100755 }]])
  })

  it('sends only changed content or mode, prunes only recorded paths, marks resent known paths pending', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-plan-'))
    put(dir, 'same.txt', 'same\n')
    put(dir, 'edit.txt', 'new\n')
    put(dir, 'added.txt', 'added\n')
    const manifest = await buildManifest(dir, config())
    const hashed = await hashManifest(manifest, { checksum: true })
    const hashOf = (path: string) => hashed.hashes[manifest.entries.findIndex((e) => e.path === path)]
    const remote = parseRecords(
      encodeRecord(hashOf('same.txt'), 0o100644, 'same.txt') +
        encodeRecord('old', 0o100644, 'edit.txt') +
        encodeRecord('zz', 0o100644, 'gone.txt'),
    )
    const plan = planSync(manifest, hashed, remote, { delete: true })
    expect(plan.send.map((e) => e.path)).toEqual(['added.txt', 'edit.txt'])
    expect(plan.remove).toEqual(['gone.txt'])
    expect(plan.pending).toEqual([encodeRecord('?', 0o100644, 'edit.txt')])
    const kept = planSync(manifest, hashed, remote, { delete: false })
    expect(kept.remove).toEqual([])
    expect(kept.records().toString()).toContain('gone.txt')
  })

  it('mass-deletion guard counts tracked files only and lists at most 20', () => {
    const tracked = new Set(Array.from({ length: 250 }, (_, i) => `t${i}`))
    const manifest = { git: { tracked } } as Parameters<typeof massDeletionGuard>[0]
    const remove = [...tracked, ...Array.from({ length: 50 }, (_, i) => `untracked${i}`)]
    expect(() => massDeletionGuard(manifest, remove.slice(0, 199), {})).not.toThrow()
    expect(() => massDeletionGuard(manifest, remove, { CRABBOX_ALLOW_MASS_DELETIONS: '1' })).not.toThrow()
    let message = ''
    try {
      massDeletionGuard(manifest, remove, {})
    } catch (error) {
      expect((error as { exitCode: number }).exitCode).toBe(6)
      message = (error as Error).message
    }
    expect(message).toMatch(/delete 250 tracked files/)
    expect(message.split('\n').filter((line) => /^ {2}t\d+$/.test(line))).toHaveLength(20)
  })
})
