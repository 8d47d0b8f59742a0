import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { gitBlock } from '../../src/services/sync/git-seed.js'
import { buildManifest } from '../../src/services/sync/index.js'
import { SEED_PARTS, buildSeed } from '../../src/services/sync/seed-build.js'
import { git, put } from '../support/fixtures.js'

/*
 * The runner half of the seed from the synced files, run with this machine's sh and git on a
 * copy of the checkout, once as a runner with fewer cores than SEED_PARTS (one process writes
 * the index) and once with more (SEED_PARTS processes at once). The sync over a real sshd
 * (sync-engine.test.ts) takes whichever branch the test host's core count picks; this pins both.
 */
const dirs: string[] = []
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

async function checkout(): Promise<string> {
  const repo = tempDir('crabbox-seed-parts-repo-')
  git(repo, 'init', '-q', '-b', 'main')
  for (let i = 0; i < 40; i++) put(repo, `pkg${i % 4}/file${i}.txt`, `file ${i}\n`.repeat(i + 1))
  put(repo, 'run.sh', '#!/bin/sh\necho hi\n', { mode: 0o755 })
  symlinkSync('run.sh', join(repo, 'link'))
  git(repo, 'add', '-A')
  git(repo, 'commit', '-qm', 'first')
  put(repo, 'pkg1/file1.txt', 'changed\n')
  git(repo, 'commit', '-qam', 'second')
  put(repo, 'pkg2/file2.txt', 'dirty\n')
  return repo
}

/** The runner after the transfer: the synced files, and the seed under `.git/crabbox` (as the tar's trailer leaves it). */
async function runnerSide(repo: string) {
  const manifest = await buildManifest(repo, { ...defaultConfig().sync })
  const seed = await buildSeed(repo, manifest, '.git/crabbox')
  const runner = tempDir('crabbox-seed-parts-runner-')
  const paths = manifest.entries.map((entry) => entry.path)
  execFileSync('sh', ['-c', 'tar -cf - -C "$1" -T - | tar -xpf - -C "$2"', 'copy', repo, runner], { input: paths.join('\n') })
  for (const file of seed.files) {
    mkdirSync(dirname(join(runner, file.path)), { recursive: true })
    writeFileSync(join(runner, file.path), file.data)
  }
  return { manifest, runner }
}

describe('the seed from the synced files, on the runner', () => {
  for (const cores of [1, SEED_PARTS * 2]) {
    it(`with ${cores} core(s): HEAD, tree, status and objects right${cores < SEED_PARTS ? ', stat data kept' : ''}`, async () => {
      const repo = await checkout()
      const { manifest, runner } = await runnerSide(repo)
      // The core count the script reads, pinned.
      const bin = tempDir('crabbox-seed-parts-bin-')
      writeFileSync(join(bin, 'getconf'), `#!/bin/sh\necho ${cores}\n`)
      chmodSync(join(bin, 'getconf'), 0o755)
      const script = `mark() { :; }\nmeta=.git/crabbox\n${gitBlock(manifest.git!, { seed: true, hydrate: false, build: true })}\necho "seeded=$seeded"`
      const out = execFileSync('sh', ['-c', script], {
        cwd: runner,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
        encoding: 'utf8',
      })
      expect(out).toBe('seeded=1\n')
      const onRunner = (...args: string[]) => git(runner, ...args)
      expect(onRunner('rev-parse', 'HEAD')).toBe(git(repo, 'rev-parse', 'HEAD'))
      expect(onRunner('rev-parse', 'HEAD^{tree}')).toBe(git(repo, 'rev-parse', 'HEAD^{tree}'))
      expect(onRunner('status', '--porcelain')).toBe(' M pkg2/file2.txt\n')
      expect(onRunner('fsck', '--no-dangling', '--connectivity-only')).toBe('')
      expect(onRunner('diff', 'HEAD', '--stat')).toContain('1 file changed')
      // Nothing of the seed is left in the metadata dir.
      expect(execFileSync('ls', [join(runner, '.git/crabbox')], { encoding: 'utf8' })).toBe('')
      if (cores < SEED_PARTS) {
        // One process wrote the index: every entry has its stat data, so `diff-files` (which
        // never hashes) sees only the real change.
        expect(onRunner('diff-files', '--name-only')).toBe('pkg2/file2.txt\n')
      }
    })
  }
})
