import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, exitAfterStdoutCloses, runCli, spareSockets, startCli, withoutTrace, type CliHome } from '../support/cli.js'
import { until } from '../support/fixtures.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'

// The agent lane (src/transport/ssh/agent-lane.ts): a spare worker that ran `ssh --id X -- cmd` on a
// static host files a route with the agent, and the agent runs the next such command itself while
// every file the route rests on is unchanged. `CRABBOX_TRACE_START=1` tells who ran a command.
const WORKER = 'start-up: thin client: worker started'
const LANE = 'start-up: thin client: agent lane started'
const DECLINED = 'start-up: thin client: agent lane declined'

describe('the agent lane against a real sshd', () => {
  let host: SshHost
  const homes: CliHome[] = []
  const folders: string[] = []

  const spares = (h: CliHome) => spareSockets(h).length
  /** Past the lane's one second in which a file's stamp is not trusted yet. */
  const settle = () => new Promise((resolve) => setTimeout(resolve, 1100))

  /** A home with a static host leased (provider ssh), the agent up and a route filed for `ssh --id <id>` from `cwd`. */
  const leased = async (prepare: (cwd: string) => void = () => {}) => {
    const h = cliHome()
    h.env = {
      ...h.env,
      CRABBOX_SSH_KEY: host.privateKeyPath,
      CRABBOX_TRACE_START: '1',
      CRABBOX_PROVIDER: 'ssh',
      CRABBOX_STATIC_HOST: host.address,
      CRABBOX_STATIC_PORT: '22',
      CRABBOX_STATIC_USER: host.user,
      CRABBOX_STATIC_WORK_ROOT: `${host.home}/work`,
    }
    homes.push(h)
    const cwd = mkdtempSync(join(tmpdir(), 'crabbox-lane-'))
    folders.push(cwd)
    prepare(cwd)
    const warm = await runCli(['warmup', '--json'], { home: h, cwd })
    expect(warm.code, warm.stderr).toBe(0)
    const { id } = JSON.parse(warm.stdout) as { id: string }
    expect((await runCli(['ssh', '--id', id, '--', 'true'], { home: h, cwd })).code).toBe(0)
    await until('two spare workers', () => spares(h) >= 2, 30_000)
    // The claim files were just written: a route resting on them is kept only once they are a second old.
    await settle()
    // This one files the route, unless one was filed already (warmup starts the agent).
    const filed = await runCli(['ssh', '--id', id, '--', 'true'], { home: h, cwd })
    expect(filed.code).toBe(0)
    return {
      h,
      id,
      cwd,
      ssh: (words: string[], options: Parameters<typeof runCli>[1] = {}) =>
        runCli(['ssh', '--id', id, '--', ...words], { home: h, cwd, ...options }),
      /** `run --id <id> --no-sync [flags] -- words`. */
      run: (flags: string[], words: string[], options: Parameters<typeof runCli>[1] = {}) =>
        runCli(['run', '--id', id, '--no-sync', ...flags, '--', ...words], { home: h, cwd, ...options }),
    }
  }
  /** The summary line's times differ from run to run. */
  const timesOut = (stderr: string) => withoutTrace(stderr).replace(/(total|command) \S+/g, '$1 <ms>')

  beforeAll(async () => {
    host = await sshHost({ ports: [22] })
  })
  afterEach(async () => {
    await Promise.all(homes.splice(0).map((h) => runCli(['agent', 'stop'], { home: h })))
    for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true })
  })
  afterAll(async () => {
    await host?.stop()
  })

  it('runs the next ssh --id on the agent lane with the worker’s stdout/stderr split, exit code and stdin', async () => {
    const { ssh } = await leased()
    const words = ['echo out; echo err >&2; cat; pwd; exit 42']
    const lane = await ssh(words, { input: 'piped in\n' })
    expect(lane.stderr).toContain(LANE)
    expect(lane.stderr).not.toContain(WORKER)
    // The agent's own phases follow the command's output, for the bench's profile (`--trace`).
    expect(lane.stderr).toMatch(
      /^err\n(.*\n)*start-up: agent lane: remote command, to its exit status [\d.]+ ms\n(.*\n)*start-up: thin client: exit code /m,
    )
    expect(lane.stderr).toMatch(/^start-up: thin client: time origin \d+\.\d \(Unix epoch\)$/m)
    const worker = await ssh(words, { input: 'piped in\n', env: { CRABBOX_NO_AGENT_LANE: '1' } })
    expect(worker.stderr).toContain(WORKER)
    expect(lane.code).toBe(42)
    expect(lane.stdout).toMatch(/^out\npiped in\n\/.+\n$/)
    expect({ code: lane.code, stdout: lane.stdout, stderr: withoutTrace(lane.stderr) }).toEqual({
      code: worker.code,
      stdout: worker.stdout,
      stderr: withoutTrace(worker.stderr),
    })
    // Killed by a signal: 128 + its number, as from the worker.
    const killed = await ssh(['kill -TERM $$'])
    expect(killed.stderr).toContain(LANE)
    expect(killed.code).toBe(143)
  })

  it('forwards Ctrl-C and a closed stdout to the remote command', async () => {
    const { h, id, cwd } = await leased()
    const { child, output, exited } = startCli(
      ['ssh', '--id', id, '--', 'trap "echo got-int; exit 7" INT; echo started; sleep 303 & wait'],
      { home: h, cwd },
    )
    await until('the command to start', () => output.stdout.includes('started'), 15_000)
    child.kill('SIGINT')
    expect(await exited).toBe(7)
    expect(output.stdout).toContain('got-int')
    expect(output.stderr).toContain(LANE)

    expect(await exitAfterStdoutCloses(['ssh', '--id', id, '--', 'yes crabbox-lane-sigpipe'], { home: h, cwd })).toBe(141)
    await until('the remote yes to end', async () => !(await host.processes()).some((p) => /yes crabbox-lane/.test(p.command)), 5000)
  })

  it('never runs on a stale route: after a stop the worker answers, as the fast path does', async () => {
    const { h, id, ssh } = await leased()
    expect((await ssh(['echo', 'on-lease'])).stderr).toContain(LANE)
    expect((await runCli(['stop', id], { home: h })).code).toBe(0)
    const after = await ssh(['echo', 'on-lease'])
    expect(after.stderr).toContain(DECLINED)
    // The configured host is still there (CRABBOX_STATIC_HOST): the fast path's answer is the one to give.
    const fast = await ssh(['echo', 'on-lease'], { env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect({ code: after.code, stdout: after.stdout, stderr: withoutTrace(after.stderr) }).toEqual({
      code: fast.code,
      stdout: fast.stdout,
      stderr: withoutTrace(fast.stderr),
    })
  })

  it('declines once a file it rests on changes, and files the route again', async () => {
    const { h, cwd, ssh } = await leased()
    expect((await ssh(['true'])).stderr).toContain(LANE)
    // A config file appears in the working folder: its settings may change the answer.
    writeFileSync(join(cwd, 'crabbox.yaml'), 'ssh:\n  user: nobody-here\n')
    const edited = await ssh(['whoami'])
    expect(edited.stderr).toContain(DECLINED)
    expect(edited.stdout).toBe(`${host.user}\n`) // the lease's claim names the user, not the config
    // Older than a second, the new file's stamp can be trusted: the worker files the route again.
    await settle()
    await until('a spare', () => spares(h) >= 1, 30_000)
    expect((await ssh(['true'])).stderr).toContain(WORKER)
    expect((await ssh(['true'])).stderr).toContain(LANE)
    // Another folder is another route.
    const elsewhere = join(cwd, 'sub')
    mkdirSync(elsewhere)
    expect((await ssh(['true'], { cwd: elsewhere })).stderr).toContain(DECLINED)
  })

  describe('run --id X --no-sync', () => {
    /** A home as `leased` makes it, with a run route filed too (the first `run` goes to a spare worker). */
    const runLeased = async (env: Record<string, string> = {}, prepare?: (cwd: string) => void) => {
      const leasedHome = await leased(prepare)
      leasedHome.h.env = { ...leasedHome.h.env, ...env }
      await until('a spare', () => spares(leasedHome.h) >= 1, 30_000)
      // No run route yet (only ssh's): the client goes to the spare worker without asking the lane.
      const first = await leasedHome.run([], ['true'])
      expect(first.stderr).toContain(WORKER)
      expect(first.stderr).not.toContain(DECLINED)
      return leasedHome
    }

    it('runs on the lane with the worker’s lines, output split, exit code, workdir and forwarded environment', async () => {
      const { run, h } = await runLeased({ CRABBOX_ENV_ALLOW: 'LANE_*', LANE_COLOUR: 'teal', OTHER_COLOUR: 'grey' })
      // Only the variable env.allow names is forwarded.
      const words = ['echo out; echo err >&2; pwd; echo "lane=$LANE_COLOUR other=$OTHER_COLOUR"; exit 42']
      const lane = await run([], words)
      expect(lane.stderr).toContain(LANE)
      expect(lane.stderr).not.toContain(WORKER)
      expect(lane.code).toBe(42)
      expect(lane.stdout).toMatch(/^out\n\/.+\/work\/.+\nlane=teal other=\n$/)
      expect(withoutTrace(lane.stderr)).toMatch(
        /^running on \S+ \(.+\) .+\nerr\nexit 42 · total \S+ · sync 0ms \(skipped\) · command \S+\n$/,
      )
      await until('a spare', () => spares(h) >= 1, 30_000)
      const worker = await run([], words, { env: { CRABBOX_NO_AGENT_LANE: '1' } })
      expect(worker.stderr).toContain(WORKER)
      expect({ code: lane.code, stdout: lane.stdout, stderr: timesOut(lane.stderr) }).toEqual({
        code: worker.code,
        stdout: worker.stdout,
        stderr: timesOut(worker.stderr),
      })
      // The words as typed, through the process-group runner; --quiet keeps stderr for the command alone.
      expect(await run([], ['printf', '%s|', 'a b', '$HOME', "it's"])).toMatchObject({ code: 0, stdout: "a b|$HOME|it's|" })
      await until('a spare', () => spares(h) >= 1, 30_000)
      expect((await run(['--quiet'], ['true'])).stderr).toContain(WORKER)
      const quiet = await run(['--quiet'], ['echo err >&2'])
      expect(quiet.stderr).toContain(LANE)
      expect(withoutTrace(quiet.stderr)).toBe('err\n')
    })

    it('Ctrl-C stops the remote process group with exit 130, and a closed stdout is 141, as from the worker', async () => {
      const { h, id, cwd } = await runLeased()
      const words = ['trap "echo got-int; exit 7" INT; echo started; sleep 304']
      const { child, output, exited } = startCli(['run', '--id', id, '--no-sync', '--', ...words], { home: h, cwd })
      await until('the command to start', () => output.stdout.includes('started'), 15_000)
      child.kill('SIGINT')
      // The command's own status is 7; the run reports the interrupt, as the pipeline does.
      expect(await exited).toBe(130)
      expect(output.stdout).not.toContain('got-int') // stdout is dropped once stopped
      expect(output.stderr).toContain(LANE)
      expect(withoutTrace(output.stderr)).toMatch(/exit 130 · total/)
      await until('the remote sleep to end', async () => !(await host.processes()).some((p) => /sleep 304/.test(p.command)), 5000)

      const yes = ['run', '--id', id, '--no-sync', '--', 'yes crabbox-run-lane-sigpipe']
      expect(await exitAfterStdoutCloses(yes, { home: h, cwd })).toBe(141)
      await until('the remote yes to end', async () => !(await host.processes()).some((p) => /yes crabbox-run-lane/.test(p.command)), 5000)
    })

    it('in a git checkout, git writing its index between runs keeps the route', async () => {
      const git = (cwd: string, ...args: string[]) => execFileSync('git', ['-C', cwd, ...args], { stdio: 'ignore' })
      const { run, cwd } = await runLeased({}, (cwd) => {
        git(cwd, 'init', '-q')
        writeFileSync(join(cwd, 'a.txt'), 'one\n')
        git(cwd, 'add', '-A')
        git(cwd, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'one')
      })
      expect((await run([], ['true'])).stderr).toContain(LANE)
      writeFileSync(join(cwd, 'a.txt'), 'two\n')
      git(cwd, 'add', '-A')
      git(cwd, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'two')
      git(cwd, 'status', '--short')
      const after = await run([], ['pwd'])
      expect(after.stderr).toContain(LANE)
      expect(after.code).toBe(0)
    })

    it('leaves --timing-json to the worker: its line is the whole pipeline’s timing', async () => {
      const { run } = await runLeased()
      expect((await run([], ['true'])).stderr).toContain(LANE)
      const timed = await run(['--timing-json'], ['true'])
      expect(timed.stderr).toContain(WORKER)
      expect(timed.stderr).not.toContain(LANE)
      expect(JSON.parse(withoutTrace(timed.stderr).trim().split('\n').at(-1)!)).toMatchObject({ exitCode: 0, syncSkipped: true })
    })
  })

  describe('run --id X with nothing to sync', () => {
    const git = (cwd: string, ...args: string[]) => execFileSync('git', ['-C', cwd, ...args], { stdio: 'ignore' })
    const checkout = (cwd: string) => {
      git(cwd, 'init', '-q')
      writeFileSync(join(cwd, 'a.txt'), 'one\n')
      git(cwd, 'add', '-A')
      git(cwd, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'one')
    }
    /** The lines a run prints that differ from run to run: times of day, durations. */
    const steady = (stderr: string) =>
      timesOut(stderr)
        .replace(/^\d\d:\d\d:\d\d /gm, '<time> ')
        .replace(/(nothing to sync) \S+$/m, '$1 <duration>')
        .replace(/sync \d+ms/, 'sync <ms>')

    /**
     * A leased git checkout synced once, then run twice with nothing to sync in a spare worker:
     * the first files the route and starts the agent's watcher on the checkout, the second (git's
     * check) keeps the watcher's stamp, on which the lane's check rests from then on.
     */
    const synced = async () => {
      const leasedHome = await leased(checkout)
      const { h, id, cwd } = leasedHome
      const run = (words: string[], options: Parameters<typeof runCli>[1] = {}) =>
        runCli(['run', '--id', id, '--', ...words], { home: h, cwd, ...options })
      expect((await run(['true'])).code).toBe(0)
      for (let turn = 0; turn < 2; turn++) {
        await until('a spare', () => spares(h) >= 1, 30_000)
        const warm = await run(['true'])
        expect(warm.stderr).toContain(WORKER)
        expect(warm.stderr).toContain('checkout unchanged')
      }
      await until('a spare', () => spares(h) >= 1, 30_000)
      return { ...leasedHome, run }
    }

    it('runs on the lane with the worker’s lines, output split and exit code; Ctrl-C is 130', async () => {
      const { h, id, cwd, run } = await synced()
      const words = ['cat a.txt; echo err >&2; exit 42']
      const lane = await run(words)
      expect(lane.stderr).toContain(LANE)
      expect(lane.stderr).not.toContain(WORKER)
      expect({ code: lane.code, stdout: lane.stdout }).toEqual({ code: 42, stdout: 'one\n' })
      expect(withoutTrace(lane.stderr)).toMatch(
        /^\d\d:\d\d:\d\d syncing .+ to \S+\n\d\d:\d\d:\d\d ✓ checkout unchanged, nothing to sync \S+\nrunning on \S+ \(.+\) .+\nerr\nexit 42 · total \S+ · sync \d+ms \(skipped\) · command \S+\n$/,
      )
      const worker = await run(words, { env: { CRABBOX_NO_AGENT_LANE: '1' } })
      expect(worker.stderr).toContain(WORKER)
      expect({ code: lane.code, stdout: lane.stdout, stderr: steady(lane.stderr) }).toEqual({
        code: worker.code,
        stdout: worker.stdout,
        stderr: steady(worker.stderr),
      })

      const { child, output, exited } = startCli(['run', '--id', id, '--', 'echo started; sleep 305'], { home: h, cwd })
      await until('the command to start', () => output.stdout.includes('started'), 15_000)
      child.kill('SIGINT')
      expect(await exited).toBe(130)
      expect(output.stderr).toContain(LANE)
      await until('the remote sleep to end', async () => !(await host.processes()).some((p) => /sleep 305/.test(p.command)), 5000)
    })

    it('declines a changed checkout before anything ran: the worker syncs it, then the lane runs again', async () => {
      const { h, cwd, run } = await synced()
      writeFileSync(join(cwd, 'a.txt'), 'two\n')
      const changed = await run(['cat a.txt'])
      expect(changed.stderr).toContain(DECLINED)
      expect(changed.stderr).toContain(WORKER)
      expect(changed.stdout).toBe('two\n')
      // A file changed within the racy window is not vouched for yet; past it a worker's run
      // takes a snapshot again, and the lane runs the next one.
      await new Promise((resolve) => setTimeout(resolve, 2100))
      await until('a spare', () => spares(h) >= 1, 30_000)
      expect((await run(['true'])).stderr).toContain(WORKER)
      await until('a spare', () => spares(h) >= 1, 30_000)
      const again = await run(['cat a.txt'])
      expect(again.stderr).toContain(LANE)
      expect(again.stdout).toBe('two\n')
    })

    it('declines when the runner holds another fingerprint: the worker syncs and the command runs once', async () => {
      const { id, h, cwd, run } = await synced()
      const meta = '.git/crabbox/sync-fingerprint'
      const sshRun = (command: string) => runCli(['ssh', '--id', id, '--', command], { home: h, cwd, env: { CRABBOX_NO_AGENT_LANE: '1' } })
      const workdir = (await runCli(['run', '--id', id, '--no-sync', '--', 'pwd'], { home: h, cwd })).stdout.trim()
      expect((await sshRun(`echo someone-else > ${workdir}/${meta}`)).code).toBe(0)
      await until('a spare', () => spares(h) >= 1, 30_000)
      const stale = await run(['cat a.txt; echo once >> ../lane-count'])
      expect(stale.stderr).toContain(DECLINED)
      expect(stale.stderr).toContain(WORKER)
      expect(stale.stdout).toBe('one\n')
      expect((await sshRun(`cat ${workdir}/../lane-count`)).stdout).toBe('once\n')
    })
  })
})
