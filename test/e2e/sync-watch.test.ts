import { createHash } from 'node:crypto'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { collectOutput, git, gitRepo, indexSettles, put as putFile, until } from '../support/fixtures.js'
import { pidRunning, processesMatching } from '../support/processes.js'

/*
 * The connection agent's file watcher (src/transport/ssh/agent-watch.ts) on
 * the warm `run --id` path, on the embedded local provider (a real sshd) with
 * the agent on: a change made between two runs is always on the runner, and
 * an unchanged checkout is proved without git once the watcher vouches.
 * `--timing-json`'s `manifest` phase says which check proved it.
 */

const homes: CliHome[] = []
const repos: string[] = []
const leases = new Map<CliHome, { slug: string; repo: string }>()
const slugOf = (home: CliHome) => leases.get(home)!.slug
const repoOf = (home: CliHome) => leases.get(home)!.repo

afterAll(async () => {
  for (const home of homes) {
    await runCli(['agent', 'stop'], { home, env: { NODE_EXTRA_CA_CERTS: undefined } }).catch(() => undefined)
    for (const pid of processesMatching((p) => p.cmdline.includes(home.dir))) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    rmSync(home.dir, { recursive: true, force: true })
  }
  for (const repo of repos) rmSync(repo, { recursive: true, force: true })
})

/** Back-dates folders (or files) a minute: a folder changed within the racy window is never vouched for. */
function age(repo: string, ...dirs: string[]): void {
  const old = new Date(Date.now() - 60_000)
  for (const dir of ['', ...dirs]) utimesSync(join(repo, dir), old, old)
}

/** `warmupEnv`: the local runner keeps the environment it started with (its PATH finds its `sh`). */
async function setup(options: { breakWatcher?: boolean; warmupEnv?: Record<string, string> } = {}) {
  const home = cliHome()
  homes.push(home)
  const repo = gitRepo('crabbox-watch-', { 'hello.txt': 'hello\n', '.gitignore': 'ignored.txt\n' })
  repos.push(repo)
  putFile(repo, 'src/a.txt', 'a1\n')
  git(repo, 'add', '.')
  git(repo, 'commit', '-qm', 'src')
  // .gitignore too: an ignore rule changed within the racy window is not vouched for either.
  age(repo, 'src', '.gitignore')
  if (options.breakWatcher) {
    // A file where the agent keeps its barrier files: the watcher can never vouch.
    mkdirSync(join(home.env.XDG_RUNTIME_DIR, 'crabbox'), { recursive: true, mode: 0o700 })
    writeFileSync(join(home.env.XDG_RUNTIME_DIR, 'crabbox', 'watch'), '')
  }
  await indexSettles(repo)
  const env = { NODE_EXTRA_CA_CERTS: undefined }
  const warm = await runCli(['warmup', '--json'], { home, cwd: repo, env: { ...env, ...options.warmupEnv } })
  expect(warm.code, warm.stderr).toBe(0)
  const { slug } = JSON.parse(warm.stdout) as { slug: string }
  leases.set(home, { slug, repo })
  type Timing = { syncSkipped: boolean; syncPhases: { name: string; reason?: string }[] }
  const run = async (script: string) => {
    const result = await runCli(['run', '--id', slug, '--timing-json', '--', 'sh', '-c', script], { home, cwd: repo, env })
    expect(result.code, result.stderr).toBe(0)
    const timing = JSON.parse(result.stderr.trim().split('\n').at(-1)!) as Timing
    const watched = timing.syncPhases.some(
      (phase) => phase.name === 'manifest' && /connection agent saw no change/.test(phase.reason ?? ''),
    )
    // The watcher named the paths that moved: no git listing, no manifest pass (the stored manifest plus those paths).
    const named = timing.syncPhases.some((phase) => phase.name === 'manifest' && /^named: /.test(phase.reason ?? ''))
    return { stdout: result.stdout, synced: !timing.syncSkipped, watched, named }
  }
  const put = (path: string, content: string) => putFile(repo, path, content, { aged: 'tree' })
  /**
   * Runs unchanged until the watcher vouches: after a change (or a new folder, which the agent
   * walks again first) the check asks git and keeps the stamp; the next one needs no git.
   */
  const settle = async (script: string, expected: string) => {
    const seen: boolean[] = []
    for (let i = 0; i < 4; i++) {
      const result = await run(script)
      expect(result.stdout).toBe(expected)
      seen.push(result.watched)
      if (result.watched) break
    }
    return seen
  }
  return { home, repo, run, put, settle }
}

/** Every file on the runner's workdir (but .git) with its content's SHA-1, as `sha1sum` prints them, sorted. */
const RUNNER_TREE = 'find . -path ./.git -prune -o -type f -print | LC_ALL=C sort | xargs -r sha1sum'

/** What the runner must hold: git's tracked and untracked non-ignored files that exist, in RUNNER_TREE's format. */
function localTree(repo: string): string {
  const listed = git(repo, 'ls-files', '-z', '--cached', '--others', '--exclude-standard').split('\0').filter(Boolean)
  const files = [...new Set(listed)].filter((path) => lstatSync(join(repo, path), { throwIfNoEntry: false })?.isFile())
  return files
    .map((path) => `./${path}`)
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map(
      (path) =>
        `${createHash('sha1')
          .update(readFileSync(join(repo, path)))
          .digest('hex')}  ${path}\n`,
    )
    .join('')
}

describe('the agent watcher on the warm run --id path', () => {
  it('proves an unchanged checkout without git, and every change between two runs reaches the runner', async () => {
    const { repo, run, put, settle } = await setup()
    expect((await run('cat hello.txt')).stdout).toBe('hello\n')
    expect((await settle('cat hello.txt', 'hello\n')).at(-1)).toBe(true)

    // An in-place edit of a tracked file.
    put('src/a.txt', 'a2\n')
    expect(await run('cat src/a.txt')).toMatchObject({ stdout: 'a2\n', watched: false, synced: true })
    expect((await settle('cat src/a.txt', 'a2\n')).at(-1)).toBe(true)

    // The same file changed again within the same second, same size.
    writeFileSync(join(repo, 'src/a.txt'), 'a3\n')
    expect((await run('cat src/a.txt')).stdout).toBe('a3\n')
    writeFileSync(join(repo, 'src/a.txt'), 'a4\n')
    expect((await run('cat src/a.txt')).stdout).toBe('a4\n')

    // Added (in a new folder), renamed, deleted.
    put('src/new/b.txt', 'b\n')
    expect((await run('cat src/new/b.txt')).stdout).toBe('b\n')
    await settle('cat src/new/b.txt', 'b\n')
    renameSync(join(repo, 'src/new/b.txt'), join(repo, 'src/new/c.txt'))
    age(repo, 'src', 'src/new')
    expect((await run('ls src/new')).stdout).toBe('c.txt\n')
    await settle('ls src/new', 'c.txt\n')
    rmSync(join(repo, 'hello.txt'))
    age(repo)
    expect((await run('ls')).stdout).toBe('src\n')
    await settle('ls', 'src\n')

    // A .gitignore change: the ignored file now syncs.
    put('ignored.txt', 'was ignored\n')
    expect((await run('ls')).stdout).toBe('src\n')
    await settle('ls', 'src\n')
    put('.gitignore', '\n')
    expect((await run('cat ignored.txt')).stdout).toBe('was ignored\n')
    expect((await settle('cat ignored.txt', 'was ignored\n')).at(-1)).toBe(true)
  })

  it('the paths the watcher names are synced without git; any doubt takes git; the runner always ends with the local tree', async () => {
    const { home, repo, run, put, settle } = await setup()
    const synced = async (named: boolean) => {
      const result = await run(RUNNER_TREE)
      expect(result.stdout).toBe(localTree(repo))
      expect(result.named).toBe(named)
    }
    await run('true')
    expect((await settle('true', '')).at(-1)).toBe(true)
    put('src/b.txt', 'b\n')
    await run('true') // a new file in a watched folder
    await settle('true', '')

    // Named: an edit, an add, a delete, a rename of a file, a change to an ignored file (never sent).
    // Written as an editor would, folders untouched (a folder's own stamps changed rebuilds the watch).
    const write = (path: string, content: string) => writeFileSync(join(repo, path), content)
    const steps: Array<[string, () => void]> = [
      ['edit', () => write('src/a.txt', 'a2\n')],
      ['add', () => write('src/c.txt', 'c\n')],
      ['delete', () => rmSync(join(repo, 'src/b.txt'))],
      ['rename of a file', () => renameSync(join(repo, 'src/c.txt'), join(repo, 'src/d.txt'))],
      ['change to an ignored file', () => write('ignored.txt', 'never sent\n')],
      ['an untracked file', () => write('notes.txt', 'untracked\n')],
    ]
    for (const [what, change] of steps) {
      change()
      await synced(true).catch((error: Error) => {
        throw new Error(`${what}: ${error.message}`)
      })
    }
    // Twice within the same second, the same size: each run names it again.
    writeFileSync(join(repo, 'src/a.txt'), 'a3\n')
    await synced(true)
    writeFileSync(join(repo, 'src/a.txt'), 'a4\n')
    await synced(true)
    await settle(RUNNER_TREE, localTree(repo))

    // Doubt takes git: a file that becomes ignored (.gitignore changed), a folder renamed.
    put('.gitignore', 'ignored.txt\nnotes.txt\n')
    await synced(false)
    await settle(RUNNER_TREE, localTree(repo))
    put('src/deep/e.txt', 'e\n')
    await run('true')
    await settle(RUNNER_TREE, localTree(repo))
    renameSync(join(repo, 'src/deep'), join(repo, 'src/deeper'))
    age(repo, 'src')
    await synced(false)
    await settle(RUNNER_TREE, localTree(repo))

    // A change while the agent is down: the new agent's watcher has no kept stamp, git decides.
    const stop = await runCli(['agent', 'stop'], { home, env: { NODE_EXTRA_CA_CERTS: undefined } })
    expect(stop.code, stop.stderr).toBe(0)
    put('src/a.txt', 'while down\n')
    await synced(false)
    await settle(RUNNER_TREE, localTree(repo))
    write('src/a.txt', 'named again\n')
    await synced(true)
  })

  it('a change while the agent is down, or after it restarted, reaches the runner', async () => {
    const { home, run, put, settle } = await setup()
    await run('true')
    expect((await settle('cat src/a.txt', 'a1\n')).at(-1)).toBe(true)
    const stop = await runCli(['agent', 'stop'], { home, env: { NODE_EXTRA_CA_CERTS: undefined } })
    expect(stop.code, stop.stderr).toBe(0)
    put('src/a.txt', 'while down\n')
    // This run starts a new agent: its watcher has no stamp the snapshot kept, so git decides.
    expect(await run('cat src/a.txt')).toMatchObject({ stdout: 'while down\n', watched: false })
    expect((await settle('cat src/a.txt', 'while down\n')).at(-1)).toBe(true)
    put('src/a.txt', 'after restart\n')
    expect(await run('cat src/a.txt')).toMatchObject({ stdout: 'after restart\n', watched: false })
  })

  it('a watcher that cannot vouch falls back to git, still correct', async () => {
    const { run, put } = await setup({ breakWatcher: true })
    for (let i = 0; i < 3; i++) expect(await run('cat src/a.txt')).toMatchObject({ stdout: 'a1\n', watched: false })
    put('src/a.txt', 'edited\n')
    expect(await run('cat src/a.txt')).toMatchObject({ stdout: 'edited\n', watched: false, synced: true })
    expect(await run('cat src/a.txt')).toMatchObject({ stdout: 'edited\n', watched: false })
  })

  it('a one-file change runs the command right after the apply, in the same round trip, exactly once; a stale or failed apply never runs it there', async () => {
    const { home, run, put, settle } = await setup()
    const counter = join(home.dir, 'runs.log')
    const runs = () => (existsSync(counter) ? readFileSync(counter, 'utf8').split('\n').filter(Boolean).length : 0)
    const script = `echo run >> ${counter}; cat src/a.txt; echo to-stderr >&2; exit 5`
    const runRaw = (script: string) =>
      runCli(['run', '--id', slugOf(home), '--timing-json', '--', 'sh', '-c', script], {
        home,
        cwd: repoOf(home),
        env: { NODE_EXTRA_CA_CERTS: undefined },
      })
    const pipelined = (stderr: string) =>
      (JSON.parse(stderr.trim().split('\n').at(-1)!) as { syncPhases: { name: string; reason?: string }[] }).syncPhases.some(
        (phase) => phase.name === 'fingerprint_remote' && /command ran (beside it|in the apply's exec)/.test(phase.reason ?? ''),
      )
    const first = await run('pwd')
    const workdir = first.stdout.trim()
    await settle('true', '')

    put('src/a.txt', 'one\n')
    const one = await runRaw(script)
    expect(one).toMatchObject({ code: 5, stdout: 'one\n' })
    expect(one.stderr).toMatch(/^to-stderr$/m)
    expect(pipelined(one.stderr)).toBe(true)
    expect(runs()).toBe(1)

    // The runner holds something else: the apply is stale, the command runs once, after the probe's sync.
    writeFileSync(join(workdir, '.git', 'crabbox', 'sync-fingerprint'), `${'0'.repeat(64)}\n`)
    put('src/a.txt', 'two\n')
    const stale = await runRaw(script)
    expect(stale).toMatchObject({ code: 5, stdout: 'two\n' })
    expect(pipelined(stale.stderr)).toBe(false)
    expect(runs()).toBe(2)

    // The apply fails on the runner (a folder with files where the file must land): the command never runs.
    await settle('true', '')
    rmSync(join(workdir, 'src', 'a.txt'))
    mkdirSync(join(workdir, 'src', 'a.txt', 'in-the-way'), { recursive: true })
    put('src/a.txt', 'three\n')
    const failed = await runRaw(script)
    expect(failed.code).not.toBe(0)
    expect(failed.code).not.toBe(5)
    expect(failed.stdout).toBe('')
    expect(runs()).toBe(2)
  })

  it('a one-file change and the command go as ONE exec on the runner (too large for the script: two, as before); stdin as on an unchanged run; Ctrl-C stops it (130)', async () => {
    // The runner's `sh` (first on its PATH) logs each sync script it starts by name (`sh -c <script> <name>`).
    const bin = mkdtempSync(join(tmpdir(), 'crabbox-sh-'))
    repos.push(bin)
    const log = join(bin, 'execs.log')
    writeFileSync(join(bin, 'sh'), `#!/bin/sh\ncase "\${3:-}" in crabbox-*) echo "$3" >> ${log};; esac\nexec /bin/sh "$@"\n`, {
      mode: 0o755,
    })
    const { home, put, settle } = await setup({ warmupEnv: { PATH: `${bin}:${process.env.PATH}` } })
    const env = { NODE_EXTRA_CA_CERTS: undefined }
    const runRaw = (argv: string[], input?: string) =>
      runCli(['run', '--id', slugOf(home), '--timing-json', '--', ...argv], { home, cwd: repoOf(home), env, input })
    const execs = () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [])
    const reasonOf = (stderr: string) =>
      (JSON.parse(stderr.trim().split('\n').at(-1)!) as { syncPhases: { name: string; reason?: string }[] }).syncPhases.find(
        (phase) => phase.name === 'fingerprint_remote',
      )?.reason
    await settle('true', '')

    rmSync(log, { force: true })
    put('src/a.txt', 'one exec\n')
    const one = await runRaw(['cat', 'src/a.txt'])
    expect(one, one.stderr).toMatchObject({ code: 0, stdout: 'one exec\n' })
    expect(reasonOf(one.stderr)).toMatch(/the command ran in the apply's exec/)
    // The apply, with the command at its end: no probe, no second exec waiting for the apply.
    expect(execs()).toEqual(['crabbox-apply-run'])

    // Too large to carry in the script (96 KiB): the apply and the command beside it, two execs as before.
    rmSync(log, { force: true })
    put('src/a.txt', `${'x'.repeat(100 * 1024)}\n`)
    const large = await runRaw(['wc', '-c', 'src/a.txt'])
    expect(large, large.stderr).toMatchObject({ code: 0, stdout: `${100 * 1024 + 1} src/a.txt\n` })
    expect(reasonOf(large.stderr)).toMatch(/the command ran beside it/)
    expect(execs().sort()).toEqual(['crabbox-apply', 'crabbox-run'])

    // The command keeps the exec's stdin (the tar is in the script): what `cat` reads is what it reads unchanged.
    put('src/a.txt', 'stdin\n')
    const changed = await runRaw(['cat'], 'hi\n')
    expect(changed.code, changed.stderr).toBe(0)
    expect(reasonOf(changed.stderr)).toMatch(/the command ran in the apply's exec/)
    const unchanged = await runRaw(['cat'], 'hi\n')
    expect(unchanged.code, unchanged.stderr).toBe(0)
    expect(reasonOf(unchanged.stderr)).toMatch(/same exec as the command/)
    expect(changed.stdout).toBe(unchanged.stdout)

    // Ctrl-C while the command of a one-exec run runs: 130, and the remote command is gone.
    put('src/a.txt', 'interrupted\n')
    rmSync(log, { force: true })
    const seconds = `302.${process.pid}${Date.now() % 1000}`
    const child = spawnCli(['run', '--id', slugOf(home), '--', 'sh', '-c', `cat src/a.txt; exec sleep ${seconds}`], {
      home,
      cwd: repoOf(home),
      env,
    })
    const out = collectOutput(child)
    await until('the command runs', () => out.stdout().includes('interrupted'), 30_000)
    const sleeping = () => processesMatching((p) => p.cmdline.includes(`sleep\u0000${seconds}`))
    await until('the sleep starts', () => sleeping().length > 0, 10_000)
    const pids = sleeping()
    child.kill('SIGINT')
    expect(await out.done, out.stderr()).toBe(130)
    await until('the remote command is gone', () => pids.filter(pidRunning).length === 0, 10_000)
    expect(execs()).toEqual(['crabbox-apply-run'])
  })

  it('a pipelined command whose connection is lost mid-command fails the run; it never runs a second time', async () => {
    const { home, settle, put } = await setup()
    const counter = join(home.dir, 'runs.log')
    await settle('true', '')
    put('src/a.txt', 'lost\n')
    const child = spawnCli(['run', '--id', slugOf(home), '--', 'sh', '-c', `echo run >> ${counter}; sleep 10`], {
      home,
      cwd: repoOf(home),
      env: { NODE_EXTRA_CA_CERTS: undefined },
    })
    const out = collectOutput(child)
    await until('the command runs', () => existsSync(counter), 30_000)
    // The connection agent holds the SSH connection the command runs on: it dies mid-command.
    const { pid } = JSON.parse((await runCli(['agent', 'status', '--json'], { home })).stdout) as { pid: number }
    process.kill(pid, 'SIGKILL')
    const code = await out.done
    expect(code, out.stderr()).toBe(255)
    expect(out.stderr()).toContain('The command was not re-run')
    expect(readFileSync(counter, 'utf8')).toBe('run\n')
  })
})
