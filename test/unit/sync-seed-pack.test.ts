import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { buildManifest } from '../../src/services/sync/manifest.js'
import { hashClean, packGroups, planSeedPack } from '../../src/services/sync/seed-pack.js'
import { git, put } from '../support/fixtures.js'

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

describe('the cold seed pack', () => {
  const repos: string[] = []
  const newRepo = () => {
    const repo = mkdtempSync(join(tmpdir(), 'crabbox-seed-pack-'))
    repos.push(repo)
    git(repo, 'init', '-q', '-b', 'main')
    return repo
  }
  afterAll(() => {
    for (const repo of repos) rmSync(repo, { recursive: true, force: true })
  })

  it('carries only files that are HEAD blobs and that git would not convert; the rest stays in the tar', async () => {
    const repo = newRepo()
    put(repo, 'a.txt', 'a\n')
    put(repo, 'b.txt', 'b\n')
    put(repo, 'crlf.txt', 'converted on checkout\n')
    put(repo, 'big.bin', 'filtered\n')
    put(repo, '.gitattributes', 'crlf.txt eol=crlf\n*.bin filter=custom\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    put(repo, 'b.txt', 'dirty\n')
    put(repo, 'new.txt', 'untracked\n')
    const manifest = await buildManifest(repo, defaultConfig().sync)
    const pack = await planSeedPack(repo, manifest, '.git/crabbox')
    const clean = [...pack!.clean].map((at) => manifest.entries[at].path).sort()
    expect(clean).toEqual(['.gitattributes', 'a.txt'])
    const paths = pack!.files.find((file) => file.path.endsWith('seed.paths'))!.data.toString('utf8')
    expect(paths.split('\0').filter(Boolean).sort()).toEqual(clean)
    // Every object of HEAD travels: the first pack holds the commit, the tree and the other paths' blobs.
    const groups = packGroups(pack!, manifest.entries, 4)
    expect(groups).toHaveLength(2)
    const objects = git(repo, 'rev-list', '--objects', '--no-walk', 'HEAD')
      .trim()
      .split('\n')
      .map((line) => line.split(' ')[0])
    expect(groups.flat().sort()).toEqual(objects.sort())
    expect(pack!.store).toBe(false)
  })

  it('hashes the carried files for the record, and records a file edited since the plan as unknown', async () => {
    const repo = newRepo()
    put(repo, 'x.txt', 'x\n')
    put(repo, 'y.txt', 'y\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    const manifest = await buildManifest(repo, defaultConfig().sync)
    const pack = await planSeedPack(repo, manifest, '.git/crabbox')
    expect(pack!.clean.size).toBe(2)
    writeFileSync(join(repo, 'y.txt'), 'edited meanwhile\n')
    const hashes: string[] = []
    await hashClean(repo, manifest.entries, pack!, (at, hash) => (hashes[at] = hash))
    const byPath = Object.fromEntries(manifest.entries.map((entry, at) => [entry.path, hashes[at]]))
    expect(byPath).toEqual({ 'x.txt': sha256('x\n'), 'y.txt': '0'.repeat(64) })
  })

  it('is off when git converts line endings everywhere', async () => {
    const repo = newRepo()
    put(repo, 'x.txt', 'x\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    git(repo, 'config', 'core.autocrlf', 'input')
    const manifest = await buildManifest(repo, defaultConfig().sync)
    expect(await planSeedPack(repo, manifest, '.git/crabbox')).toBeUndefined()
  })
})
