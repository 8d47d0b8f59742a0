import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { gitRepo as tinyRepo, indexSettles, put as putFile, sleep } from '../support/fixtures.js'
import { pidRunning, processesMatching } from '../support/processes.js'

/** Processes whose command line mentions `needle` (our runners and the commands they started). */
const processesMentioning = (needle: string) => processesMatching((p) => p.cmdline.includes(needle))

const localDir = (home: CliHome) => join(home.env.XDG_STATE_HOME, 'crabbox', 'local')
const leftovers = (home: CliHome) => (existsSync(localDir(home)) ? readdirSync(localDir(home)) : [])

const homes: CliHome[] = []
const repos: string[] = []
function setup(pathEnv: Record<string, string>) {
  const home = cliHome()
  const repo = tinyRepo()
  homes.push(home)
  repos.push(repo)
  // No agent: each test owns every process it starts.
  return { home, repo, env: { CRABBOX_NO_AGENT: '1', NODE_EXTRA_CA_CERTS: undefined, ...pathEnv } }
}

afterAll(async () => {
  for (const home of homes) {
    for (const pid of processesMentioning(home.dir)) {
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

// Every case runs through both start paths: bin/run.js's fast path (src/fast-path.ts, for `run --id X … -- cmd`) and the full oclif CLI.
describe.each<{ path: string; pathEnv: Record<string, string> }>([
  { path: 'fast path', pathEnv: {} },
  { path: 'full CLI', pathEnv: { CRABBOX_NO_FAST_PATH: '1' } },
])('crabbox run on the embedded local provider ($path)', ({ pathEnv }) => {
  it('streams remote stdout and stderr apart, exits with the remote code, and leaves no lease or runner behind', async () => {
    const { home, repo, env } = setup(pathEnv)
    const result = await runCli(['run', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3'], { home, cwd: repo, env })
    expect(result.stdout).toBe('out\n')
    expect(result.stderr).toMatch(/^err$/m)
    expect(result.stderr).toMatch(/without isolation/)
    expect(result.stderr).toMatch(/^exit 3 · total \S+ · sync \S+ · command \S+$/m)
    expect(result.code).toBe(3)
    expect(leftovers(home)).toEqual([])
    expect(processesMentioning(home.dir)).toEqual([])
    const list = await runCli(['list', '--json'], { home, cwd: repo, env })
    expect(JSON.parse(list.stdout)).toEqual([])
  })

  it('runs in the synced checkout, quotes arguments exactly and forwards allowed env', async () => {
    const { home, repo, env } = setup(pathEnv)
    const result = await runCli(['run', '--', 'sh', '-c', 'cat hello.txt; printf "[%s]" "$1" "$CRABBOX_E2E_X"', 'sh', "it's a  'test'"], {
      home,
      cwd: repo,
      env: { ...env, CRABBOX_ENV_ALLOW: 'CRABBOX_E2E_*', CRABBOX_E2E_X: 'forwarded' },
    })
    expect(result.code).toBe(0)
    expect(result.stdout).toBe("hello from the checkout\n[it's a  'test'][forwarded]")
  })

  it('warmup, then run --id <slug> reuses the lease and skips an unchanged sync; stop twice succeeds', async () => {
    const { home, repo, env } = setup(pathEnv)
    const warm = await runCli(['warmup', '--json'], { home, cwd: repo, env })
    expect(warm.code).toBe(0)
    const lease = JSON.parse(warm.stdout) as { id: string; slug: string; provider: string }
    expect(lease.id).toMatch(/^cbx_[0-9a-f]{12}$/)
    expect(lease.provider).toBe('local')

    const first = await runCli(['run', '--id', lease.slug, '--timing-json', '--', 'cat', 'hello.txt'], { home, cwd: repo, env })
    expect(first.code).toBe(0)
    expect(first.stdout).toBe('hello from the checkout\n')
    const second = await runCli(['run', '--id', lease.slug, '--timing-json', '--', 'true'], { home, cwd: repo, env })
    expect(second.code).toBe(0)
    const timing = JSON.parse(second.stderr.trim().split('\n').at(-1)!)
    expect(timing).toMatchObject({ provider: 'local', leaseId: lease.id, slug: lease.slug, syncSkipped: true, exitCode: 0 })
    expect(typeof timing.syncMs).toBe('number')
    expect(typeof timing.commandMs).toBe('number')
    expect(typeof timing.totalMs).toBe('number')
    expect(Array.isArray(timing.syncPhases)).toBe(true)

    const status = await runCli(['status', lease.id, '--json'], { home, cwd: repo, env })
    expect(JSON.parse(status.stdout)).toMatchObject({ id: lease.id, slug: lease.slug, ready: true })

    const inspect = await runCli(['inspect', lease.slug, '--json'], { home, cwd: repo, env })
    expect(JSON.parse(inspect.stdout)).toMatchObject({ id: lease.id, provider: 'local', sshHost: '127.0.0.1' })

    const stop = await runCli(['stop', lease.slug], { home, cwd: repo, env })
    expect(stop.code).toBe(0)
    expect(stop.stdout).toMatch(/released/)
    const again = await runCli(['stop', lease.slug], { home, cwd: repo, env })
    expect(again.code).toBe(0)
    expect(again.stdout).toMatch(/already released/)
    expect(leftovers(home)).toEqual([])
    expect(processesMentioning(home.dir)).toEqual([])
  })

  it('--no-sync reports syncSkipped: true; an unknown lease is exit 4; no command is exit 2; --sync-only syncs and runs nothing', async () => {
    const { home, repo, env } = setup(pathEnv)
    const result = await runCli(['run', '--no-sync', '--timing-json', '--', 'true'], { home, cwd: repo, env })
    expect(result.code).toBe(0)
    const timing = JSON.parse(result.stderr.trim().split('\n').at(-1)!)
    expect(timing).toMatchObject({ syncSkipped: true, syncMs: 0, exitCode: 0, provider: 'local' })
    const missing = await runCli(['run', '--id', 'no-such-lease', '--', 'true'], { home, cwd: repo, env })
    expect(missing.code).toBe(4)
    const nothing = await runCli(['run'], { home, cwd: repo, env })
    expect(nothing.code).toBe(2)
    const syncOnly = await runCli(['run', '--sync-only'], { home, cwd: repo, env })
    expect(syncOnly.code, syncOnly.stderr).toBe(0)
    expect(syncOnly.stderr).toMatch(/synced \S+\/cbx_[0-9a-f]{12}\/crabbox-repo-/)
    expect(leftovers(home)).toEqual([])
  })

  it('a reused lease checks an unchanged checkout and runs the command in one exec; edits, new files and a diverged runner sync first; the command runs once every time', async () => {
    const { home, repo, env } = setup(pathEnv)
    await indexSettles(repo)
    const warm = await runCli(['warmup', '--json'], { home, cwd: repo, env })
    const lease = JSON.parse(warm.stdout) as { slug: string }
    const counter = join(home.dir, 'runs.log')
    type Timing = { syncSkipped: boolean; exitCode: number; syncPhases: { name: string; reason?: string }[] }
    const run = async (script: string) => {
      const result = await runCli(['run', '--id', lease.slug, '--timing-json', '--', 'sh', '-c', `echo run >> ${counter}; ${script}`], {
        home,
        cwd: repo,
        env,
      })
      const timing = JSON.parse(result.stderr.trim().split('\n').at(-1)!) as Timing
      const combined = timing.syncPhases.some(
        (phase) => phase.name === 'fingerprint_remote' && /same exec as the command/.test(phase.reason ?? ''),
      )
      const names = timing.syncPhases.map((phase) => phase.name)
      expect(new Set(names).size).toBe(names.length)
      return { ...result, timing, combined }
    }
    const runs = () => readFileSync(counter, 'utf8').split('\n').filter(Boolean).length
    // Written a minute ago: outside the racy window in which crabbox re-checks a file every time.
    const put = (path: string, content: string) => putFile(repo, path, content, { aged: 'file' })

    const first = await run('pwd; cat hello.txt')
    expect(first.code).toBe(0)
    expect(first.timing.syncSkipped).toBe(false)
    const workdir = first.stdout.split('\n')[0]
    expect(first.stdout).toBe(`${workdir}\nhello from the checkout\n`)

    const unchanged = await run('cat hello.txt')
    expect(unchanged).toMatchObject({ code: 0, stdout: 'hello from the checkout\n', combined: true, timing: { syncSkipped: true } })
    expect(runs()).toBe(2)

    put('hello.txt', 'edited\n')
    const edited = await run('cat hello.txt')
    expect(edited).toMatchObject({ code: 0, stdout: 'edited\n', combined: false, timing: { syncSkipped: false } })
    expect(runs()).toBe(3)

    put('new.txt', 'untracked\n')
    const added = await run('cat new.txt')
    expect(added).toMatchObject({ code: 0, stdout: 'untracked\n', timing: { syncSkipped: false } })
    expect(runs()).toBe(4)

    // The runner holds something else now: its fingerprint no longer matches ours.
    writeFileSync(join(workdir, '.git', 'crabbox', 'sync-fingerprint'), `${'0'.repeat(64)}\n`)
    const diverged = await run('cat new.txt hello.txt')
    expect(diverged).toMatchObject({ code: 0, stdout: 'untracked\nedited\n', combined: false, timing: { syncSkipped: false } })
    expect(runs()).toBe(5)

    const status = await run('cat new.txt; exit 7')
    expect(status).toMatchObject({ code: 7, stdout: 'untracked\n', combined: true, timing: { syncSkipped: true, exitCode: 7 } })
    expect(runs()).toBe(6)

    // Ctrl-C reaches a command started by the combined exec too.
    const seconds = `301.${process.pid}${Date.now() % 1000}`
    const child = spawnCli(['run', '--id', lease.slug, '--', 'sh', '-c', `echo started; exec sleep ${seconds}`], { home, cwd: repo, env })
    let out = ''
    await new Promise<void>((resolve) => child.stdout!.on('data', (d) => (out += d).includes('started') && resolve()))
    let sleeping = processesMentioning(`sleep\u0000${seconds}`)
    for (let i = 0; i < 100 && sleeping.length === 0; i++) {
      await sleep(50)
      sleeping = processesMentioning(`sleep\u0000${seconds}`)
    }
    expect(sleeping.length).toBeGreaterThan(0)
    child.kill('SIGINT')
    expect(await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))).toBe(130)
    expect(sleeping.filter(pidRunning)).toEqual([])
    expect((await runCli(['stop', lease.slug], { home, cwd: repo, env })).code).toBe(0)
  })

  it('Ctrl-C stops the command of a warm run --id (exit 130) and keeps the lease', async () => {
    const { home, repo, env } = setup(pathEnv)
    const warm = await runCli(['warmup', '--json'], { home, cwd: repo, env })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout) as { id: string; slug: string }
    const seconds = `301.${process.pid}${Date.now() % 1000}`
    const child = spawnCli(['run', '--id', lease.slug, '--no-sync', '--', 'sh', '-c', `echo started; exec sleep ${seconds}`], {
      home,
      cwd: repo,
      env,
    })
    let stdout = ''
    await new Promise<void>((resolve) =>
      child.stdout!.on('data', (d) => {
        stdout += d
        if (stdout.includes('started')) resolve()
      }),
    )
    let sleeping = processesMentioning(`sleep\u0000${seconds}`)
    for (let i = 0; i < 100 && sleeping.length === 0; i++) {
      await sleep(50)
      sleeping = processesMentioning(`sleep\u0000${seconds}`)
    }
    expect(sleeping.length).toBeGreaterThan(0)
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(code).toBe(130)
    expect(sleeping.filter(pidRunning)).toEqual([])
    const status = await runCli(['status', lease.id, '--json'], { home, cwd: repo, env })
    expect(status.code, status.stderr).toBe(0)
    expect((await runCli(['stop', lease.slug], { home, cwd: repo, env })).code).toBe(0)
  })

  it('Ctrl-C stops the remote command and releases the lease', async () => {
    const { home, repo, env } = setup(pathEnv)
    // A sleep length no other test uses, so we can find exactly this command's process.
    const seconds = `300.${process.pid}${Date.now() % 1000}`
    const child = spawnCli(['run', '--no-sync', '--', 'sh', '-c', `echo started; exec sleep ${seconds}`], { home, cwd: repo, env })
    let stdout = ''
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    await new Promise<void>((resolve) =>
      child.stdout!.on('data', (d) => {
        stdout += d
        if (stdout.includes('started')) resolve()
      }),
    )
    // `echo started` comes just before the `exec sleep`: give the exec a moment on a busy machine.
    let sleeping = processesMentioning(`sleep\u0000${seconds}`)
    for (let i = 0; i < 100 && sleeping.length === 0; i++) {
      await sleep(50)
      sleeping = processesMentioning(`sleep\u0000${seconds}`)
    }
    expect(sleeping.length).toBeGreaterThan(0)
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(code).toBe(130)
    expect(stderr).toMatch(/released cbx_/)
    expect(sleeping.filter(pidRunning)).toEqual([])
    expect(leftovers(home)).toEqual([])
    expect(processesMentioning(home.dir)).toEqual([])
  })
})
