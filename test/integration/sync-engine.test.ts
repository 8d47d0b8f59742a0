import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { buildManifest, checkUnchanged, syncWorkdir, type SyncOptions } from '../../src/services/sync/index.js'
import { SEED_PARTS } from '../../src/services/sync/seed-build.js'
import { openSession } from '../../src/transport/ssh/index.js'
import type { SshSession, SshTarget } from '../../src/transport/ssh/types.js'
import { createProgress } from '../../src/ui/progress.js'
import { cliHome } from '../support/cli.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { tcpProxy } from '../support/tcp-proxy.js'
import { git, indexSettles, put, sleep } from '../support/fixtures.js'

const quiet = createProgress({ quiet: true })

function newRepo(): string {
  const dir = mkdtempSync(join(tmpdir(), 'crabbox-sync-repo-'))
  git(dir, 'init', '-q', '-b', 'main')
  return dir
}

/** Everything under `dir` except `.git`: path → "file <mode x?> <sha256>" or "link <target>". */
function tree(dir: string, rel = ''): Map<string, string> {
  const out = new Map<string, string>()
  for (const name of readdirSync(join(dir, rel))) {
    const path = rel ? `${rel}/${name}` : name
    if (path === '.git') continue
    const stat = lstatSync(join(dir, path))
    if (stat.isSymbolicLink()) out.set(path, `link ${readlinkSync(join(dir, path))}`)
    else if (stat.isDirectory()) for (const [k, v] of tree(dir, path)) out.set(k, v)
    else
      out.set(
        path,
        `file ${stat.mode & 0o100 ? 'x' : '-'} ${createHash('sha256')
          .update(readFileSync(join(dir, path)))
          .digest('hex')}`,
      )
  }
  return out
}

/** What the runner should hold: exactly the manifest, byte for byte. */
async function expected(repo: string, config: Config['sync']): Promise<Map<string, string>> {
  const manifest = await buildManifest(repo, config)
  const all = tree(repo)
  return new Map(manifest.entries.map((entry) => [entry.path, all.get(entry.path)!]))
}

describe('sync engine against a real sshd', () => {
  let host: SshHost
  let session: SshSession
  let target: SshTarget
  let config: Config['sync']
  let work = 0
  const home = cliHome()
  const savedEnv = { ...process.env }

  beforeAll(async () => {
    // Hash cache and sent manifests go to a throwaway state dir.
    Object.assign(process.env, home.env)
    host = await sshHost()
    target = {
      host: host.address,
      port: host.ports[0],
      fallbackPorts: [],
      user: host.user,
      privateKeyPath: host.privateKeyPath,
      knownHostsPath: join(home.dir, 'known_hosts'),
    }
    session = await openSession(target, { useAgent: false })
  })
  afterAll(async () => {
    await session?.close()
    await host?.stop()
    for (const key of Object.keys(home.env)) {
      if (savedEnv[key] === undefined) delete process.env[key]
      else process.env[key] = savedEnv[key]
    }
    rmSync(home.dir, { recursive: true, force: true })
  })
  beforeEach(() => {
    config = { ...defaultConfig().sync }
  })

  const workdir = () => `${host.home}/work/w${++work}/repo`
  // Each sync's bookkeeping lands before the test looks at (or syncs) the checkout again.
  const sync = (repo: string, wd: string, extra: Partial<SyncOptions> = {}) =>
    syncWorkdir({ repoRoot: repo, workdir: wd, config, session, progress: quiet, env: {}, ...extra }).then(async (result) => {
      await result.saved
      return result
    })

  it('lands the manifest byte for byte, then round-trips edits, deletes, renames and modes; an unchanged re-sync sends nothing', async () => {
    const repo = newRepo()
    put(repo, 'README.md', '# hello\n')
    put(repo, 'dir with spaces/file name.txt', 'spaces\n')
    put(repo, 'ünïcødé/データ.txt', 'unicode\n')
    put(repo, '-leading-dash', 'dash\n')
    put(repo, 'bin/tool.sh', '#!/bin/sh\necho tool\n', { mode: 0o755 })
    put(repo, 'empty', '')
    put(repo, 'big/blob.bin', Buffer.alloc(50 * 1024 * 1024, 7))
    symlinkSync('README.md', join(repo, 'link-to-readme'))
    symlinkSync('bin', join(repo, 'link-to-dir'))
    put(repo, '.gitignore', 'ignored.log\n')
    put(repo, 'ignored.log', 'never travels\n')
    put(repo, 'node_modules/pkg/index.js', 'excluded by default\n')
    put(repo, '.crabboxignore', 'secret/\n')
    put(repo, 'secret/key.txt', 'excluded by .crabboxignore\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'init')
    put(repo, 'untracked.txt', 'untracked but not ignored\n')
    const wd = workdir()

    const first = await sync(repo, wd)
    expect(first.skipped).toBe(false)
    expect(tree(wd)).toEqual(await expected(repo, config))
    expect(existsSync(join(wd, 'ignored.log'))).toBe(false)
    expect(existsSync(join(wd, 'node_modules'))).toBe(false)
    expect(existsSync(join(wd, 'secret'))).toBe(false)
    expect(lstatSync(join(wd, 'bin/tool.sh')).mode & 0o111).toBe(0o111)
    expect(first.phases.map((phase) => phase.name)).toEqual(
      expect.arrayContaining(['manifest', 'fingerprint', 'fingerprint_remote', 'transfer', 'finalize']),
    )

    const again = await sync(repo, wd)
    expect(again).toMatchObject({ skipped: true, filesSent: 0, bytesSent: 0, filesDeleted: 0 })

    // Churn in ignored folders does not invalidate the fingerprint.
    put(repo, 'node_modules/pkg/other.js', 'more\n')
    put(repo, 'ignored.log', 'changed\n')
    expect((await sync(repo, wd)).skipped).toBe(true)

    // Edit, delete, rename, mode change, file → symlink, symlink → file, file → directory.
    put(repo, 'README.md', '# hello again\n')
    rmSync(join(repo, 'empty'))
    renameSync(join(repo, 'dir with spaces/file name.txt'), join(repo, 'dir with spaces/renamed.txt'))
    chmodSync(join(repo, 'bin/tool.sh'), 0o644)
    rmSync(join(repo, '-leading-dash'))
    symlinkSync('README.md', join(repo, '-leading-dash'))
    rmSync(join(repo, 'link-to-dir'))
    put(repo, 'link-to-dir', 'now a file\n')
    rmSync(join(repo, 'untracked.txt'))
    put(repo, 'untracked.txt/inside', 'a directory now\n')
    const edited = await sync(repo, wd)
    expect(edited.skipped).toBe(false)
    expect(tree(wd)).toEqual(await expected(repo, config))
    expect(lstatSync(join(wd, 'bin/tool.sh')).mode & 0o111).toBe(0)
    // Only what changed travelled: not the 50 MB blob again.
    expect(edited.bytesSent).toBeLessThan(1024)
    expect(edited.filesDeleted).toBeGreaterThanOrEqual(3)

    // Adding an untracked, non-ignored file invalidates the fingerprint.
    put(repo, 'new-untracked.txt', 'hi\n')
    const added = await sync(repo, wd)
    expect(added).toMatchObject({ skipped: false, filesSent: 1 })
    expect(tree(wd)).toEqual(await expected(repo, config))
  })

  it('a re-sync of an unchanged checkout needs no manifest pass, also after ignored churn; edits and new untracked files still travel', async () => {
    const repo = newRepo()
    // Written a minute ago: outside the racy window, so the unchanged check may vouch for them.
    const settled = (path: string, content: string) => put(repo, path, content, { aged: 'file' })
    settled('.gitignore', 'build/\n')
    for (let i = 0; i < 30; i++) settled(`src/f${i}.txt`, `${i}\n`)
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'init')
    settled('notes.txt', 'untracked\n')
    await indexSettles(repo)
    const wd = workdir()
    const viaSnapshot = (result: { phases: { name: string; reason?: string }[] }) =>
      result.phases.some((phase) => phase.name === 'fingerprint' && phase.reason === 'checkout unchanged since its last fingerprint')

    expect((await sync(repo, wd)).skipped).toBe(false)
    const again = await sync(repo, wd)
    expect(again).toMatchObject({ skipped: true, filesSent: 0 })
    expect(viaSnapshot(again)).toBe(true)

    settled('build/out.bin', 'ignored churn\n')
    settled('node_modules/m/index.js', 'excluded churn\n')
    expect((await sync(repo, wd)).skipped).toBe(true)

    // Same size, mtime put back: only the ctime tells.
    writeFileSync(join(repo, 'src/f7.txt'), '8\n')
    const old = new Date(Date.now() - 60_000)
    utimesSync(join(repo, 'src/f7.txt'), old, old)
    const edited = await sync(repo, wd)
    expect(edited).toMatchObject({ skipped: false, filesSent: 1 })
    expect(readFileSync(join(wd, 'src/f7.txt'), 'utf8')).toBe('8\n')

    settled('src/new.txt', 'new\n')
    expect(await sync(repo, wd)).toMatchObject({ skipped: false, filesSent: 1 })
    expect(tree(wd)).toEqual(await expected(repo, config))
    const settledAgain = await sync(repo, wd)
    expect(settledAgain.skipped).toBe(true)
    expect(viaSnapshot(settledAgain)).toBe(true)
  })

  it('a small change goes in the apply exec without waiting for the probe; a runner holding something else gets the probe path', async () => {
    const repo = newRepo()
    for (let i = 0; i < 10; i++) put(repo, `src/f${i}.txt`, `${i}\n`, { aged: 'file' })
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'init')
    await indexSettles(repo)
    const wd = workdir()
    const applies: string[] = []
    const counting: SshSession = {
      ...session,
      exec: (command, options) => {
        if (command.includes('crabbox-apply')) applies.push(command)
        return session.exec(command, options)
      },
    }
    const guarded = (command: string) => command.includes('echo stale')
    await sync(repo, wd, { session: counting })
    applies.length = 0

    // Planned against what this machine sent last: one apply exec, guarded.
    put(repo, 'src/f1.txt', '1 edited\n')
    rmSync(join(repo, 'src/f2.txt'))
    chmodSync(join(repo, 'src/f3.txt'), 0o755)
    expect(await sync(repo, wd, { session: counting })).toMatchObject({ skipped: false, filesSent: 2, filesDeleted: 1 })
    expect(applies.map(guarded)).toEqual([true])
    expect(tree(wd)).toEqual(await expected(repo, config))
    expect((await sync(repo, wd)).skipped).toBe(true)

    // The runner holds something else: the guarded exec changes nothing, the probe's answer decides.
    applies.length = 0
    await host.run(`su - crabbox -s /bin/sh -c "echo other > '${wd}/.git/crabbox/sync-fingerprint'"`)
    put(repo, 'src/f5.txt', '5 edited\n')
    expect((await sync(repo, wd, { session: counting })).skipped).toBe(false)
    expect(applies.map(guarded)).toEqual([true, false])
    expect(tree(wd)).toEqual(await expected(repo, config))

    // As `run --id` syncs (the check awaited first): the folded apply is the only exec; when the
    // runner holds something else, that exec answers the probe too and the sync goes on from it.
    const execs: string[] = []
    const all: SshSession = { ...session, exec: (command, options) => (execs.push(command), session.exec(command, options)) }
    const asRun = async () => {
      const check = checkUnchanged(repo, config)
      await check.unchanged
      return sync(repo, wd, { session: all, check, checkAwaited: true })
    }
    await indexSettles(repo)
    expect((await sync(repo, wd)).skipped).toBe(true)
    put(repo, 'src/f6.txt', '6 edited\n', { aged: 'file' })
    execs.length = 0
    expect(await asRun()).toMatchObject({ skipped: false, filesSent: 1 })
    expect(execs.map((command) => [command.includes('crabbox-apply'), guarded(command)])).toEqual([[true, true]])
    expect(tree(wd)).toEqual(await expected(repo, config))

    await host.run(`su - crabbox -s /bin/sh -c "echo other > '${wd}/.git/crabbox/sync-fingerprint'"`)
    put(repo, 'src/f7.txt', '7 edited\n', { aged: 'file' })
    execs.length = 0
    expect(await asRun()).toMatchObject({ skipped: false, filesSent: 1 })
    expect(execs.map((command) => [command.includes('crabbox-apply'), guarded(command)])).toEqual([
      [true, true],
      [true, false],
    ])
    expect(tree(wd)).toEqual(await expected(repo, config))
  })

  it('never deletes what crabbox did not put there, and seeds git so status and diff against the base work remotely', async () => {
    const origin = mkdtempSync(join(tmpdir(), 'crabbox-sync-origin-'))
    git(origin, 'init', '-q', '--bare', '-b', 'main')
    const repo = newRepo()
    put(repo, 'src/a.txt', 'a\n')
    put(repo, 'src/b.txt', 'b\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'base')
    git(repo, 'remote', 'add', 'origin', origin)
    git(repo, 'push', '-q', 'origin', 'main')
    git(repo, 'fetch', '-q', 'origin')
    // The runner user must be able to read origin (it fetches from it on the runner).
    execFileSync('chown', ['-R', host.user, origin])
    git(repo, 'checkout', '-q', '-b', 'feature')
    put(repo, 'src/a.txt', 'a changed on a branch\n')
    git(repo, 'commit', '-qam', 'feature work')
    put(repo, 'src/b.txt', 'b dirty\n')
    const wd = workdir()
    expect((await sync(repo, wd)).warnings).toEqual([])

    const status = await host.run(
      `su - crabbox -s /bin/sh -c 'cd "${wd}" && git status --porcelain && git rev-parse --abbrev-ref HEAD && git diff --name-only origin/main...'`,
    )
    expect(status.stderr).toBe('')
    expect(status.stdout.split('\n')).toEqual([' M src/b.txt', 'feature', 'src/a.txt', ''])
    // Fetched from origin on the runner (blobless): HEAD and the base ref are ours, and the history is whole.
    const refs = await host.run(
      `su - crabbox -s /bin/sh -c 'cd "${wd}" && git log -1 --format=%H && git rev-parse origin/main && git fsck --no-dangling --connectivity-only 2>&1; echo fsck=$?; [ -f .git/shallow ] || echo not shallow'`,
    )
    expect(refs.stdout).toBe(
      `${git(repo, 'rev-parse', 'HEAD').trim()}\n${git(repo, 'rev-parse', 'origin/main').trim()}\nfsck=0\nnot shallow\n`,
    )

    // Runner-side build output and caches survive syncs; a removed synced file is pruned.
    await host.run(
      `su - crabbox -s /bin/sh -c "mkdir -p '${wd}/node_modules/x' '${wd}/build' && echo cache > '${wd}/node_modules/x/i.js' && echo out > '${wd}/build/out.o' && echo extra > '${wd}/src/runner-made.txt'"`,
    )
    rmSync(join(repo, 'src/b.txt'))
    const pruned = await sync(repo, wd)
    expect(pruned.filesDeleted).toBe(1)
    expect(existsSync(join(wd, 'src/b.txt'))).toBe(false)
    for (const kept of ['node_modules/x/i.js', 'build/out.o', 'src/runner-made.txt', '.git/HEAD'])
      expect(existsSync(join(wd, kept))).toBe(true)
    rmSync(origin, { recursive: true, force: true })
  })

  it('seeds git when the runner cannot reach origin', async () => {
    const repo = newRepo()
    put(repo, 'x.txt', 'x\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    git(repo, 'remote', 'add', 'origin', '/nonexistent/crabbox-origin.git')
    put(repo, 'x.txt', 'dirty\n')
    const wd = workdir()
    const result = await sync(repo, wd)
    expect(result.warnings).toEqual([])
    expect(result.phases.find((phase) => phase.name === 'git_seed')?.skipped).toBeFalsy()
    const status = await host.run(`su - crabbox -s /bin/sh -c 'cd "${wd}" && git status --porcelain; git log --format=%s'`)
    expect(status.stdout).toBe(' M x.txt\none\n')
    expect((await sync(repo, wd)).skipped).toBe(true)
  })

  /** Runs a shell line in the runner's workdir as the runner user. */
  const onRunner = (wd: string, line: string) => host.run(`su - crabbox -s /bin/sh -c ${JSON.stringify(`cd "${wd}" && ${line}`)}`)

  it('seeds git from the synced files without the history: status, log -1, tree and shallow mark right, dirty files and all', async () => {
    const repo = newRepo()
    put(repo, 'src/a.txt', 'a\n')
    put(repo, 'src/b.txt', 'b\n')
    put(repo, 'run.sh', '#!/bin/sh\necho hi\n', { mode: 0o755 })
    put(repo, 'dist/built.js', 'tracked but excluded by crabbox\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'first')
    put(repo, 'src/c.txt', 'c\n')
    symlinkSync('src/a.txt', join(repo, 'link-to-a'))
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'second')
    git(repo, 'remote', 'add', 'origin', '/nonexistent/crabbox-origin.git')
    put(repo, 'src/b.txt', 'b dirty\n')
    put(repo, 'src/a.txt', 'a staged\n')
    git(repo, 'add', 'src/a.txt')
    rmSync(join(repo, 'src/c.txt'))
    const wd = workdir()
    const result = await sync(repo, wd)
    expect(result.warnings).toEqual([])
    const head = git(repo, 'rev-parse', 'HEAD').trim()
    const status = await onRunner(
      wd,
      'git status --porcelain; git log -1 --format=%H:%s; git rev-parse HEAD^{tree}; cat .git/shallow; git rev-list --count HEAD',
    )
    expect(status.stderr).toBe('')
    expect(status.stdout.split('\n')).toEqual([
      // dist/ is tracked but crabbox never syncs it, so it is missing on the runner as before.
      ' D dist/built.js',
      ' M src/a.txt',
      ' M src/b.txt',
      ' D src/c.txt',
      `${head}:second`,
      git(repo, 'rev-parse', 'HEAD^{tree}').trim(),
      head,
      '1',
      '',
    ])
    // HEAD's blobs are all there (a diff against HEAD reads them), not only the trees.
    const diff = await onRunner(
      wd,
      'git diff --stat HEAD -- src/a.txt src/b.txt run.sh link-to-a | tail -n 1; git fsck --no-dangling --connectivity-only 2>&1; echo fsck=$?',
    )
    expect(diff.stdout).toContain('2 files changed')
    expect(diff.stdout).toContain('fsck=0')
    // The seeded index holds each file's stat data: `diff-files` (which never hashes) sees only the
    // real changes, so the first `git status` does not hash every file again. A runner with
    // SEED_PARTS cores or more hashes in parallel and gathers most entries without it.
    const stat = await onRunner(wd, 'getconf _NPROCESSORS_ONLN; git diff-files --name-only')
    const [cores, ...statDirty] = stat.stdout.trim().split('\n')
    if (Number(cores) < SEED_PARTS) expect(statDirty).toEqual(['dist/built.js', 'src/a.txt', 'src/b.txt', 'src/c.txt'])
    expect((await sync(repo, wd)).skipped).toBe(true)

    // The next commit arrives as a small bundle on top of the shallow seed.
    git(repo, 'commit', '-qam', 'third')
    expect((await sync(repo, wd)).warnings).toEqual([])
    const next = await onRunner(wd, 'git status --porcelain; git log --format=%s')
    expect(next.stdout).toBe(' D dist/built.js\nthird\nsecond\n')
  })

  it('a shallow seed deepens on demand from origin, and the base ref points at the seeded HEAD', async () => {
    const origin = mkdtempSync(join(tmpdir(), 'crabbox-sync-origin-'))
    git(origin, 'init', '-q', '--bare', '-b', 'main')
    const repo = newRepo()
    put(repo, 'x.txt', 'one\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    put(repo, 'x.txt', 'two\n')
    git(repo, 'commit', '-qam', 'two')
    git(repo, 'remote', 'add', 'origin', `file://${origin}`)
    git(repo, 'push', '-q', 'origin', 'main')
    git(repo, 'fetch', '-q', 'origin')
    execFileSync('chown', ['-R', host.user, origin])
    const wd = workdir()
    expect((await sync(repo, wd)).warnings).toEqual([])
    const seeded = await onRunner(
      wd,
      'git rev-list --count HEAD; git rev-parse origin/main; git status --porcelain; git diff --name-only origin/main...',
    )
    expect(seeded.stdout).toBe(`1\n${git(repo, 'rev-parse', 'HEAD').trim()}\n`)
    const deepened = await onRunner(wd, 'git fetch -q --deepen=1 origin && git log --format=%s && git status --porcelain')
    expect(deepened.stderr).toBe('')
    expect(deepened.stdout).toBe('two\none\n')
    rmSync(origin, { recursive: true, force: true })
  })

  it('falls back to the bundle when a runner file is not what the record says (the seed tree would be wrong)', async () => {
    const repo = newRepo()
    put(repo, 'x.txt', 'x\n')
    put(repo, 'y.txt', 'y\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    const wd = workdir()
    config = { ...config, gitSeed: false }
    await sync(repo, wd)
    // Changed behind crabbox's back: its record still says x.txt is ours, so it is not sent again.
    await onRunner(wd, 'echo changed on the runner > x.txt')
    config = { ...config, gitSeed: true }
    const seeded = await sync(repo, wd)
    expect(seeded.warnings).toEqual([])
    const status = await onRunner(wd, 'git status --porcelain; git log --format=%s; git cat-file -p HEAD:x.txt')
    expect(status.stdout).toBe(' M x.txt\none\nx\n')
  })

  it('a seed that fails half-way leaves a clear warning and no checkout that looks right; the next sync seeds it', async () => {
    const repo = newRepo()
    put(repo, 'x.txt', 'x\n')
    put(repo, 'src/y.txt', 'y\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    git(repo, 'remote', 'add', 'origin', '/nonexistent/crabbox-origin.git')
    const wd = workdir()
    // The runner's repository exists but takes no objects (as a full disk would): the seed's
    // packs fail after the files landed, and so does the bundle it falls back to.
    await host.run(
      `su - crabbox -s /bin/sh -c ${JSON.stringify(`mkdir -p "${wd}" && cd "${wd}" && git init -q && chmod a-w .git/objects .git/objects/pack`)}`,
    )
    const failed = await sync(repo, wd)
    expect(failed.warnings.join('\n')).toMatch(/could not read the git bundle/)
    expect(failed.warnings.join('\n')).toContain(`still lacks commit ${git(repo, 'rev-parse', 'HEAD').trim().slice(0, 12)}`)
    const broken = await onRunner(
      wd,
      'git rev-parse -q --verify HEAD || echo no HEAD; git ls-files | wc -l; ls .git/crabbox; [ -f .git/crabbox/sync-fingerprint ] || echo no fingerprint',
    )
    // No HEAD, an empty index, no seed files left behind and no fingerprint (the next sync looks again).
    expect(broken.stdout.split('\n')).toEqual(['no HEAD', '0', 'sync-fingerprint.next', 'sync-manifest', 'no fingerprint', ''])
    expect(await onRunner(wd, 'cat x.txt src/y.txt')).toMatchObject({ stdout: 'x\ny\n' })

    await onRunner(wd, 'chmod u+w .git/objects .git/objects/pack')
    const repaired = await sync(repo, wd)
    expect(repaired.warnings).toEqual([])
    const status = await onRunner(
      wd,
      'git status --porcelain; git log -1 --format=%H; git fsck --no-dangling --connectivity-only 2>&1; echo fsck=$?',
    )
    expect(status.stdout).toBe(`${git(repo, 'rev-parse', 'HEAD').trim()}\nfsck=0\n`)
    expect((await sync(repo, wd)).skipped).toBe(true)
  })

  it('a cold seed over several packs: clean files from git objects, dirty, untracked and deleted ones right, base ref and record too', async () => {
    const repo = newRepo()
    for (let i = 0; i < 30; i++) put(repo, `p${i % 3}/f${i}.txt`, `file ${i}\n`.repeat(50))
    put(repo, 'run.sh', '#!/bin/sh\necho hi\n', { mode: 0o755 })
    symlinkSync('p0/f0.txt', join(repo, 'link'))
    put(repo, 'gone.txt', 'deleted locally\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'first')
    put(repo, 'p1/f1.txt', 'changed\n')
    git(repo, 'commit', '-qam', 'second')
    git(repo, 'remote', 'add', 'origin', '/nonexistent/crabbox-origin.git')
    git(repo, 'update-ref', 'refs/remotes/origin/main', 'HEAD')
    put(repo, 'p2/f2.txt', 'dirty tracked\n')
    put(repo, 'new/untracked.txt', 'untracked\n')
    rmSync(join(repo, 'gone.txt'))
    const head = git(repo, 'rev-parse', 'HEAD').trim()
    const wd = workdir()
    const result = await sync(repo, wd, { env: { CRABBOX_SYNC_CHANNELS: '3' } })
    expect(result.warnings).toEqual([])
    expect(tree(wd)).toEqual(await expected(repo, config))
    const status = await onRunner(
      wd,
      'git status --porcelain; git log -1 --format=%H; git rev-parse origin/main; cat .git/shallow; git rev-list --count HEAD; git diff-files --name-only; ls .git/crabbox',
    )
    expect(status.stderr).toBe('')
    expect(status.stdout.split('\n')).toEqual([
      ' D gone.txt',
      ' M p2/f2.txt',
      '?? new/',
      head,
      head,
      head,
      '1',
      // The clean files were written by git with their stat data: only the real changes differ.
      'gone.txt',
      'p2/f2.txt',
      'sync-fingerprint',
      'sync-manifest',
      '',
    ])
    expect(await onRunner(wd, 'cat p2/f2.txt new/untracked.txt; [ -e gone.txt ] || echo absent')).toMatchObject({
      stdout: 'dirty tracked\nuntracked\nabsent\n',
    })
    // One pack per channel, as they arrived: the runner wrote no objects of its own.
    expect(await onRunner(wd, "git count-objects -v | grep -E '^(count|packs):'")).toMatchObject({ stdout: 'count: 0\npacks: 3\n' })
    // The record the pack's files left behind is right: an unchanged re-sync skips, an edit travels alone.
    expect((await sync(repo, wd)).skipped).toBe(true)
    put(repo, 'p0/f3.txt', 'edited\n')
    expect((await sync(repo, wd)).filesSent).toBe(1)
    expect(tree(wd)).toEqual(await expected(repo, config))
  })

  it('a cold seed whose pack the runner cannot read fails the sync clearly, leaves no record or HEAD, and the next sync repairs it', async () => {
    const repo = newRepo()
    put(repo, 'x.txt', 'x\n')
    put(repo, 'src/y.txt', 'y\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'one')
    git(repo, 'remote', 'add', 'origin', '/nonexistent/crabbox-origin.git')
    const wd = workdir()
    // A `.git` that is no repository: the runner's `git index-pack` refuses the objects.
    await host.run(`su - crabbox -s /bin/sh -c ${JSON.stringify(`mkdir -p "${wd}/.git" && echo garbage > "${wd}/.git/HEAD"`)}`)
    const error = await sync(repo, wd).then(
      () => undefined,
      (e: Error) => e,
    )
    expect(error?.message).toMatch(/reading HEAD's files as git objects failed on the runner: the runner could not read the git pack/)
    const broken = await onRunner(
      wd,
      '[ -f .git/crabbox/sync-manifest ] || echo no record; [ -f .git/crabbox/sync-fingerprint ] || echo no fingerprint; [ -f .git/index ] || echo no index',
    )
    expect(broken.stdout).toBe('no record\nno fingerprint\nno index\n')

    await onRunner(wd, 'rm -f .git/HEAD')
    const repaired = await sync(repo, wd)
    expect(repaired.warnings).toEqual([])
    expect(tree(wd)).toEqual(await expected(repo, config))
    const status = await onRunner(wd, 'git status --porcelain; git log -1 --format=%H')
    expect(status.stdout).toBe(`${git(repo, 'rev-parse', 'HEAD').trim()}\n`)
    expect((await sync(repo, wd)).skipped).toBe(true)
  })

  it('stops before deleting 200 or more tracked files unless CRABBOX_ALLOW_MASS_DELETIONS=1', async () => {
    const repo = newRepo()
    for (let i = 0; i < 210; i++) put(repo, `many/f${i}.txt`, `${i}\n`)
    put(repo, 'keep.txt', 'keep\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'many')
    const wd = workdir()
    await sync(repo, wd)
    rmSync(join(repo, 'many'), { recursive: true })
    const error = await sync(repo, wd).then(
      () => undefined,
      (e: unknown) => e as { exitCode: number; message: string },
    )
    expect(error?.exitCode).toBe(6)
    expect(error?.message).toMatch(/would delete 210 tracked files/)
    expect(error?.message.split('\n').filter((line) => line.startsWith('  many/'))).toHaveLength(20)
    expect(readdirSync(join(wd, 'many'))).toHaveLength(210)
    const allowed = await sync(repo, wd, { env: { CRABBOX_ALLOW_MASS_DELETIONS: '1' } })
    expect(allowed.filesDeleted).toBe(210)
    expect(tree(wd)).toEqual(await expected(repo, config))
  })

  it('a symlink never lets a write or a delete escape the workdir', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'crabbox-outside-'))
    execFileSync('chown', [host.user, outside])
    writeFileSync(join(outside, 'victim.txt'), 'must survive\n')
    execFileSync('chown', [host.user, join(outside, 'victim.txt')])
    const repo = newRepo()
    symlinkSync(outside, join(repo, 'escape'))
    put(repo, 'sub/victim.txt', 'synced\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'links')
    const wd = workdir()
    await sync(repo, wd)
    expect(readlinkSync(join(wd, 'escape'))).toBe(outside)

    // The repo turns the symlink into a directory with a file of the same name as one outside.
    rmSync(join(repo, 'escape'))
    put(repo, 'escape/victim.txt', 'written through the link?\n')
    // Meanwhile something on the runner replaced a synced directory with a link outside.
    await host.run(`su - crabbox -s /bin/sh -c "rm -rf '${wd}/sub' && ln -s '${outside}' '${wd}/sub'"`)
    rmSync(join(repo, 'sub'), { recursive: true })
    put(repo, 'sub/new.txt', 'new\n')
    await sync(repo, wd)
    expect(readFileSync(join(outside, 'victim.txt'), 'utf8')).toBe('must survive\n')
    expect(readdirSync(outside)).toEqual(['victim.txt'])
    expect(lstatSync(join(wd, 'escape')).isDirectory()).toBe(true)
    expect(lstatSync(join(wd, 'sub')).isDirectory()).toBe(true)
    expect(tree(wd)).toEqual(await expected(repo, config))

    // A path through a symlink inside the repo is refused locally.
    const plain = mkdtempSync(join(tmpdir(), 'crabbox-sync-dir-'))
    symlinkSync(outside, join(plain, 'out'))
    put(plain, 'ok.txt', 'ok\n')
    const manifest = await buildManifest(plain, config)
    expect(manifest.entries.map((entry) => entry.path)).toEqual(['ok.txt', 'out'])
    rmSync(outside, { recursive: true, force: true })
  })

  it('syncs a folder outside git with its record in .crabbox, and keeps removed files when sync.delete is off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-sync-plain-'))
    put(dir, 'a.txt', 'a\n')
    put(dir, 'sub/b.txt', 'b\n')
    put(dir, 'node_modules/m.js', 'excluded\n')
    const wd = workdir()
    expect((await sync(dir, wd)).warnings).toEqual([])
    expect(tree(wd)).toEqual(
      new Map([
        ...(await expected(dir, config)),
        ['.crabbox/sync-fingerprint', expect.any(String)],
        ['.crabbox/sync-manifest', expect.any(String)],
      ]),
    )
    expect(existsSync(join(wd, '.git'))).toBe(false)
    expect((await sync(dir, wd)).skipped).toBe(true)
    config = { ...config, delete: false }
    rmSync(join(dir, 'sub/b.txt'))
    expect((await sync(dir, wd)).filesDeleted).toBe(0)
    expect(readFileSync(join(wd, 'sub/b.txt'), 'utf8')).toBe('b\n')
  })

  it('a transfer split over parallel channels lands byte for byte with modes and links, and commits its record only once every part landed', async () => {
    const repo = newRepo()
    for (const dir of ['a', 'm', 'z']) {
      for (let i = 0; i < 20; i++) put(repo, `${dir}/f${i}.txt`, `${dir} ${i}\n`.repeat(200))
    }
    put(repo, 'm/run.sh', '#!/bin/sh\necho hi\n', { mode: 0o755 })
    symlinkSync('../a/f1.txt', join(repo, 'z/link'))
    git(repo, 'add', '-A')
    git(repo, 'commit', '-qm', 'parts')
    const channels = { CRABBOX_SYNC_CHANNELS: '4' }

    // A part that cannot land (the runner's z/ is not writable) fails the sync: no fingerprint, no record.
    const wd = workdir()
    await host.run(`su - crabbox -s /bin/sh -c "mkdir -p '${wd}'" && mkdir '${wd}/z' && chmod 555 '${wd}/z'`)
    const error = await sync(repo, wd, { env: channels }).then(
      () => undefined,
      (e: Error & { exit?: string }) => e,
    )
    expect(error?.message).toMatch(/extracting files failed/)
    expect(existsSync(join(wd, '.git/crabbox/sync-fingerprint'))).toBe(false)
    expect(existsSync(join(wd, '.git/crabbox/sync-manifest'))).toBe(false)
    expect(readFileSync(join(wd, 'a/f0.txt'), 'utf8')).toBe('a 0\n'.repeat(200))

    // Once the runner is fixed the next sync repairs everything, and its record covers every part.
    await host.run(`chown crabbox '${wd}/z' && chmod 755 '${wd}/z'`)
    const repaired = await sync(repo, wd, { env: channels })
    expect(repaired.filesSent).toBe(62)
    expect(tree(wd)).toEqual(await expected(repo, config))
    expect(lstatSync(join(wd, 'm/run.sh')).mode & 0o777).toBe(0o755)
    expect((await sync(repo, wd, { env: channels })).skipped).toBe(true)
    put(repo, 'z/f19.txt', 'changed\n')
    const one = await sync(repo, wd, { env: channels })
    expect(one.filesSent).toBe(1)
    expect(tree(wd)).toEqual(await expected(repo, config))
  })

  it('Ctrl-C during a split transfer closes every channel: nothing keeps running on the runner, no fingerprint', async () => {
    const proxy = await tcpProxy({ host: host.address, port: host.ports[0] }, { delayMs: 5 })
    const viaProxy = await openSession({ ...target, host: proxy.host, port: proxy.port }, { useAgent: false })
    try {
      const repo = newRepo()
      for (let i = 0; i < 8; i++) put(repo, `p${i}.bin`, randomBytes(4 * 1024 * 1024))
      const wd = workdir()
      const controller = new AbortController()
      const stopWhenWriting = setInterval(() => {
        if (existsSync(join(wd, 'p7.bin'))) {
          clearInterval(stopWhenWriting)
          controller.abort()
        }
      }, 2)
      const result = await sync(repo, wd, { session: viaProxy, signal: controller.signal, env: { CRABBOX_SYNC_COMPRESS: '0' } }).then(
        () => 'finished',
        () => 'stopped',
      )
      clearInterval(stopWhenWriting)
      expect(result).toBe('stopped')
      expect(existsSync(join(wd, '.git/crabbox/sync-fingerprint'))).toBe(false)
      let left = ''
      for (let i = 0; i < 200; i++) {
        left = (await host.processes())
          .filter((p) => p.command.includes(wd))
          .map((p) => `${p.pid} ${p.command}`)
          .join('\n')
        if (left === '') break
        await sleep(50)
      }
      expect(left).toBe('')
    } finally {
      await viaProxy.close()
      await proxy.close()
    }
  })

  it('an interrupted transfer repairs itself on the next sync', async () => {
    const proxy = await tcpProxy({ host: host.address, port: host.ports[0] }, { delayMs: 5 })
    const viaProxy = await openSession({ ...target, host: proxy.host, port: proxy.port }, { useAgent: false })
    try {
      const repo = newRepo()
      put(repo, 'small.txt', 'v1\n')
      put(repo, 'large.bin', Buffer.alloc(4 * 1024 * 1024, 1))
      git(repo, 'add', '-A')
      git(repo, 'commit', '-qm', 'v1')
      const wd = workdir()
      await sync(repo, wd, { session: viaProxy })

      // A change, then back: after the cut the runner holds a half-written mix.
      const random = randomBytes(24 * 1024 * 1024)
      put(repo, 'large.bin', random)
      put(repo, 'small.txt', 'v2\n')
      const cutWhenWriting = setInterval(() => {
        // The runner may rename the file between two looks: one lstat that tolerates absence.
        const size = lstatSync(join(wd, 'large.bin'), { throwIfNoEntry: false })?.size
        if (size !== undefined && size !== 4 * 1024 * 1024) {
          clearInterval(cutWhenWriting)
          proxy.cut()
        }
      }, 2)
      const failed = await sync(repo, wd, { session: viaProxy, env: { CRABBOX_SYNC_COMPRESS: '0' } }).then(
        () => 'finished',
        () => 'failed',
      )
      clearInterval(cutWhenWriting)
      expect(failed).toBe('failed')
      put(repo, 'large.bin', Buffer.alloc(4 * 1024 * 1024, 1))
      put(repo, 'small.txt', 'v1\n')
      const repaired = await sync(repo, wd)
      expect(repaired.skipped).toBe(false)
      expect(tree(wd)).toEqual(await expected(repo, config))
    } finally {
      await viaProxy.close()
      await proxy.close()
    }
  })
})
