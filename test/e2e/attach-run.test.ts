import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliPath, runCli, spawnCli } from '../support/cli.js'
import { collectOutput as collect, gitRepo, until } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

/**
 * `crabbox attach` from a second process against a live `crabbox run` (broker under
 * workerd, static pool of one real sshd host), and the history commands on that run.
 */

const rig = brokerWithStaticHosts({ token: 'e2e-attach-token', owner: 'attach@example.com', names: ['e2e-attach'] })
const { api } = rig
const cliEnv = () => rig.cliEnv()
let repo: string

/** attach's stderr without its own `[crabbox]` event lines: the run's remote stderr. */
const remoteStderr = (text: string) =>
  text
    .split(/(?<=\n)/)
    .filter((line) => !line.startsWith('[crabbox] '))
    .join('')

beforeAll(() => {
  repo = gitRepo('crabbox-attach-repo-', { 'hello.txt': 'hello\n' })
})

afterAll(() => {
  if (repo) rmSync(repo, { recursive: true, force: true })
})

describe('crabbox attach', () => {
  it('follows a live crabbox run from a second process: the same stdout and stderr, byte for byte, and its exit code', async () => {
    // Interleaved streams, multi-byte text, a line split across writes, no final newline.
    const script = [
      'sleep 2',
      'for i in 1 2 3 4 5 6 7 8; do printf "out %s größe ✓\\n" $i; printf "err %s\\n" $i >&2; sleep 0.2; done',
      'printf "half-"; sleep 0.3; printf "line\\n"',
      'printf "tail without newline"',
      'exit 3',
    ].join('; ')
    const run = collect(spawnCli(['run', '--no-sync', '--', 'sh', '-c', script], { home: rig.home, cwd: repo, env: cliEnv() }))
    const runId = await until('the run ID', () => /recording run (run_[0-9a-f]{12})/.exec(run.stderr())?.[1])
    const attach = collect(spawnCli(['attach', runId], { home: rig.home, cwd: repo, env: cliEnv() }))

    const [runCode, attachCode] = await Promise.all([run.done, attach.done])
    expect(runCode).toBe(3)
    expect(run.stdout()).toBe(
      'out 1 größe ✓\nout 2 größe ✓\nout 3 größe ✓\nout 4 größe ✓\nout 5 größe ✓\nout 6 größe ✓\nout 7 größe ✓\nout 8 größe ✓\nhalf-line\ntail without newline',
    )
    expect(attach.stdout()).toBe(run.stdout())
    expect(remoteStderr(attach.stderr())).toBe('err 1\nerr 2\nerr 3\nerr 4\nerr 5\nerr 6\nerr 7\nerr 8\n')
    expect(run.stderr()).toContain('err 1\nerr 2\n')
    expect(attach.stderr()).toMatch(/^\[crabbox\] command\.finished phase=failed exit=3$/m)
    expect(attachCode).toBe(3)

    // Attaching again after the end replays the whole run; --after skips what was seen.
    const again = await runCli(['attach', runId], { home: rig.home, env: cliEnv() })
    expect(again.stdout).toBe(run.stdout())
    expect(again.code).toBe(3)
    // --json: one result object, and still the run's exit code.
    const json = await runCli(['attach', runId, '--json'], { home: rig.home, env: cliEnv() })
    expect(json.code).toBe(3)
    expect(JSON.parse(json.stdout)).toMatchObject({ exitCode: 3 })
    const events = JSON.parse((await runCli(['events', runId, '--json'], { home: rig.home, env: cliEnv() })).stdout).events as {
      seq: number
      type: string
      data?: string
    }[]
    const firstOut = events.find((event) => event.type === 'stdout')!.seq
    const tail = await runCli(['attach', runId, '--after', String(firstOut)], { home: rig.home, env: cliEnv() })
    const expected = events
      .filter((event) => event.type === 'stdout' && event.seq > firstOut)
      .map((event) => event.data)
      .join('')
    expect(tail.stdout).toBe(expected)
    expect(run.stdout().endsWith(expected)).toBe(true)
  })

  it('events, logs, history and results read the recorded run; bad IDs are usage errors, unknown runs exit 4', async () => {
    const finished = await runCli(['run', '--no-sync', '--timing-json', '--', 'echo', 'logged'], {
      home: rig.home,
      cwd: repo,
      env: cliEnv(),
    })
    expect(finished.code).toBe(0)
    const runId = JSON.parse(finished.stderr.trim().split('\n').at(-1)!).runId as string

    const events = await runCli(['events', runId, '--after', '1', '--limit', '2'], { home: rig.home, env: cliEnv() })
    expect(events.code).toBe(0)
    expect(
      events.stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => line.slice(0, 5)),
    ).toEqual(['0002 ', '0003 '])

    const logs = await runCli(['logs', runId], { home: rig.home, env: cliEnv() })
    expect(logs.stdout).toBe('logged\n')
    expect(JSON.parse((await runCli(['logs', runId, '--json'], { home: rig.home, env: cliEnv() })).stdout)).toMatchObject({
      run: { id: runId },
      log: 'logged\n',
    })

    const history = JSON.parse((await runCli(['history', '--json', '--state', 'succeeded'], { home: rig.home, env: cliEnv() })).stdout)
    expect(history.runs.map((run: { id: string }) => run.id)).toContain(runId)
    expect(history.runs.every((run: { state: string }) => run.state === 'succeeded')).toBe(true)
    expect((await runCli(['history'], { home: rig.home, env: cliEnv() })).stdout).toMatch(new RegExp(`^${runId} succeeded exit=0 `, 'm'))
    // On a terminal: a header and the start relative to now.
    const env: Record<string, string | undefined> = { ...process.env, ...rig.home.env, ...cliEnv(), TERM: 'xterm' }
    for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key]
    const onTty = spawnSync('script', ['-qec', `${process.execPath} ${cliPath} history`, '/dev/null'], {
      env: env as NodeJS.ProcessEnv,
      encoding: 'utf8',
      timeout: 60_000,
    }).stdout
    expect(onTty).toMatch(/^RUN\s+STATE\s+EXIT\s+STARTED\s+DURATION\s+LEASE\s+COMMAND\r?$/m)
    expect(onTty).toMatch(new RegExp(`^${runId}\\s+succeeded\\s+0\\s+(just now|\\d+[sm] ago)\\s`, 'm'))

    const noResults = await runCli(['results', runId], { home: rig.home, env: cliEnv() })
    expect(noResults.code).toBe(0)
    expect(noResults.stderr).toContain('no test results recorded')
    // --json prints the run's bare results object: null when it recorded none.
    expect(JSON.parse((await runCli(['results', runId, '--json'], { home: rig.home, env: cliEnv() })).stdout)).toBeNull()

    // A run that recorded a JUnit summary (as `run --junit` would).
    const { run } = await api('POST', '/v1/runs', { command: ['npm', 'test'] })
    await api('POST', `/v1/runs/${run.id}/finish`, {
      exitCode: 1,
      results: {
        format: 'junit',
        files: ['junit.xml'],
        suites: 1,
        tests: 2,
        failures: 1,
        errors: 0,
        skipped: 0,
        timeSeconds: 1.2,
        failed: [{ suite: 'pkg', name: 'fails', kind: 'failure', message: 'expected 1' }],
      },
    })
    const results = await runCli(['results', run.id], { home: rig.home, env: cliEnv() })
    expect(results.stdout).toContain('junit: 2 tests, 1 failure, 0 errors, 0 skipped in 1.2s (1 suite, 1 file)')
    expect(results.stdout).toContain('FAIL pkg › fails: expected 1')
    expect(JSON.parse((await runCli(['results', run.id, '--json'], { home: rig.home, env: cliEnv() })).stdout)).toMatchObject({
      tests: 2,
      failures: 1,
    })
    // --id names the run as the positional argument does.
    expect(JSON.parse((await runCli(['results', '--id', run.id, '--json'], { home: rig.home, env: cliEnv() })).stdout)).toMatchObject({
      tests: 2,
      failures: 1,
    })

    expect((await runCli(['events', 'nope'], { home: rig.home, env: cliEnv() })).code).toBe(2)
    const missing = await runCli(['attach', 'run_000000000000'], { home: rig.home, env: cliEnv() })
    expect(missing.code).toBe(4)
    expect(missing.stderr).toContain('crabbox history')
  })

  it('--id names the run or the lease; two different IDs are exit 2', async () => {
    const warm = await runCli(['warmup', '--json'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    try {
      const finished = await runCli(['run', '--id', lease.slug, '--no-sync', '--timing-json', '--', 'echo', 'by-id'], {
        home: rig.home,
        cwd: repo,
        env: cliEnv(),
      })
      expect(finished.code, finished.stderr).toBe(0)
      const runId = JSON.parse(finished.stderr.trim().split('\n').at(-1)!).runId as string
      expect((await runCli(['logs', '--id', runId], { home: rig.home, env: cliEnv() })).stdout).toBe('by-id\n')
      expect((await runCli(['attach', '--id', runId, '--poll', '200ms'], { home: rig.home, env: cliEnv() })).stdout).toBe('by-id\n')
      const events = JSON.parse((await runCli(['events', '--id', runId, '--json'], { home: rig.home, env: cliEnv() })).stdout).events
      expect(events.some((event: { type: string }) => event.type === 'command.finished')).toBe(true)
      expect(JSON.parse((await runCli(['results', '--id', runId, '--json'], { home: rig.home, env: cliEnv() })).stdout)).toBeNull()
      // The same ID both ways is fine; two different ones are a usage error naming both.
      expect((await runCli(['logs', runId, '--id', runId], { home: rig.home, env: cliEnv() })).stdout).toBe('by-id\n')
      for (const command of ['logs', 'events', 'attach', 'results']) {
        const both = await runCli([command, runId, '--id', 'run_000000000000'], { home: rig.home, env: cliEnv() })
        expect(both.code, `${command}: ${both.stderr}`).toBe(2)
        expect(both.stderr).toContain(`${runId} and --id run_000000000000`)
      }
      for (const command of ['status', 'inspect', 'stop']) {
        const both = await runCli([command, lease.slug, '--id', 'cbx_000000000000'], { home: rig.home, env: cliEnv() })
        expect(both.code, `${command}: ${both.stderr}`).toBe(2)
        expect(both.stderr).toContain(`${lease.slug} and --id cbx_000000000000`)
      }
      expect((await runCli(['attach', '--poll', 'soon', runId], { home: rig.home, env: cliEnv() })).code).toBe(2)
      expect((await api('GET', `/v1/leases/${lease.id}`)).lease.state).toBe('active')
    } finally {
      await runCli(['stop', '--id', lease.id], { home: rig.home, env: cliEnv() })
    }
  })

  it('status --json and inspect --json show the lease with the field names and types scripts read; inspect prints key=value', async () => {
    const warm = await runCli(['warmup', '--json', '--idle-timeout', '20m'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    try {
      const status = JSON.parse((await runCli(['status', '--id', lease.slug, '--json'], { home: rig.home, env: cliEnv() })).stdout)
      const record = (await api('GET', `/v1/leases/${lease.id}`)).lease
      expect(status).toMatchObject({
        id: lease.id,
        slug: lease.slug,
        provider: 'static',
        target: 'linux',
        state: 'active',
        host: record.host,
        network: 'public',
        sshHost: record.host,
        sshUser: record.sshUser,
        sshPort: record.sshPort,
        lastTouchedAt: record.lastTouchedAt,
        idleTimeout: '20m0s',
        expiresAt: record.expiresAt,
        hasHost: true,
        ready: true,
      })
      for (const key of ['serverId', 'serverType', 'sshKey', 'idleFor']) expect(typeof status[key], key).toBe('string')
      expect(status.labels).toMatchObject({ lease: lease.id, slug: lease.slug, owner: 'attach@example.com', idle_timeout_secs: '1200' })
      // inspect --json: the same object (idleFor moves with the clock).
      const inspect = JSON.parse((await runCli(['inspect', lease.id, '--json'], { home: rig.home, env: cliEnv() })).stdout)
      expect({ ...inspect, idleFor: undefined }).toEqual({ ...status, idleFor: undefined })
      const human = await runCli(['inspect', lease.slug], { home: rig.home, env: cliEnv() })
      expect(human.code, human.stderr).toBe(0)
      const lines = human.stdout.trim().split('\n')
      expect(
        lines.every((line) => /^[a-z_.0-9]+=/.test(line)),
        human.stdout,
      ).toBe(true)
      expect(lines).toContain(`id=${lease.id}`)
      expect(lines).toContain(`ssh_port=${record.sshPort}`)
      expect(lines).toContain('label.owner=attach@example.com')
      expect((await runCli(['status', lease.slug], { home: rig.home, env: cliEnv() })).stdout).toMatch(
        new RegExp(`^${lease.id} slug=${lease.slug} provider=static target=linux state=active .* ready=true `),
      )
    } finally {
      await runCli(['stop', lease.id], { home: rig.home, env: cliEnv() })
    }
  })

  it('ssh --id with no command and stdout not a terminal prints an OpenSSH line that works, host key pinned', async () => {
    const warm = await runCli(['warmup', '--json'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    try {
      // A first connection pins the host key in the lease's known_hosts (from the checkout that claimed the lease).
      expect((await runCli(['ssh', '--id', lease.slug, '--', 'true'], { home: rig.home, cwd: repo, env: cliEnv() })).code).toBe(0)
      // As a script runs it: `line=$(crabbox ssh --id X)` (stdin not piped, stdout captured).
      const env: Record<string, string | undefined> = { ...process.env, ...rig.home.env, ...cliEnv() }
      for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key]
      const printed = spawnSync(process.execPath, [cliPath, 'ssh', '--id', lease.slug], {
        cwd: repo,
        env: env as NodeJS.ProcessEnv,
        stdio: ['ignore', 'pipe', 'pipe'],
        encoding: 'utf8',
        timeout: 60_000,
      })
      expect(printed.status, printed.stderr).toBe(0)
      const line = printed.stdout.trim()
      const knownHosts = join(rig.home.env.XDG_CONFIG_HOME, 'crabbox', 'testboxes', lease.id, 'known_hosts')
      expect(line).toMatch(/^ssh -i \S+ -p \d+ (-o \S+ )+\S+@\S+$/)
      expect(line).toContain(`UserKnownHostsFile=${knownHosts}`)
      // OpenSSH takes the first value of an option: strict checking against that file, no prompts.
      const words = line.split(' ')
      const out = execFileSync(
        words[0],
        ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'LogLevel=ERROR', ...words.slice(1), 'echo', 'via-openssh'],
        { encoding: 'utf8', env: env as NodeJS.ProcessEnv, timeout: 60_000 },
      )
      expect(out).toBe('via-openssh\n')
    } finally {
      await runCli(['stop', lease.id], { home: rig.home, env: cliEnv() })
    }
  })

  it('crabbox heartbeat marks a kept lease active and prints its new expiry; --idle-timeout changes it', async () => {
    const warm = await runCli(['warmup', '--json', '--idle-timeout', '10m'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    try {
      const before = (await api('GET', `/v1/leases/${lease.id}`)).lease
      const beat = await runCli(['heartbeat', '--id', lease.slug, '--idle-timeout', '45m'], { home: rig.home, env: cliEnv() })
      expect(beat.code).toBe(0)
      const after = (await api('GET', `/v1/leases/${lease.id}`)).lease
      expect(after.idleTimeoutSeconds).toBe(2700)
      expect(Date.parse(after.lastTouchedAt)).toBeGreaterThan(Date.parse(before.lastTouchedAt))
      expect(beat.stdout.trim()).toBe(`${lease.id} expires=${after.expiresAt} idle_timeout=2700s`)
      // The lease as a positional argument, like stop and status.
      expect((await runCli(['heartbeat', lease.slug], { home: rig.home, env: cliEnv() })).code).toBe(0)
      const missing = await runCli(['heartbeat', '--id', 'cbx_000000000000'], { home: rig.home, env: cliEnv() })
      expect(missing.code).toBe(4)
    } finally {
      await runCli(['stop', lease.id], { home: rig.home, env: cliEnv() })
    }
    // A released lease is not revived by a heartbeat.
    const late = await runCli(['heartbeat', '--id', lease.id], { home: rig.home, env: cliEnv() })
    expect(late.code).toBe(4)
    expect(late.stderr).toContain('crabbox warmup')
    expect((await api('GET', `/v1/leases/${lease.id}`)).lease.state).toBe('released')
  })

  it('stop --all releases the leases the caller owns, and stop --json names the lease in id', async () => {
    const warm = await runCli(['warmup', '--json'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    expect(existsSync(join(rig.home.env.XDG_CONFIG_HOME, 'crabbox', 'testboxes', lease.id))).toBe(true)
    const other = await runCli(['stop', '--all', '--json'], {
      home: rig.home,
      env: rig.cliEnv({ CRABBOX_OWNER: 'someone-else@example.com' }),
    })
    expect(other.code, other.stderr).toBe(0)
    expect(JSON.parse(other.stdout)).toEqual({ leases: [] })
    expect((await api('GET', `/v1/leases/${lease.id}`)).lease.state).toBe('active')

    const all = await runCli(['stop', '--all', '--json'], { home: rig.home, env: cliEnv() })
    expect(all.code, all.stderr).toBe(0)
    expect(JSON.parse(all.stdout).leases).toEqual([{ id: lease.id, slug: lease.slug, released: true, alreadyGone: false }])
    expect((await api('GET', `/v1/leases/${lease.id}`)).lease.state).toBe('released')
    // The brokered lease's key folder went with it.
    expect(existsSync(join(rig.home.env.XDG_CONFIG_HOME, 'crabbox', 'testboxes', lease.id))).toBe(false)
    const again = await runCli(['stop', lease.id, '--json'], { home: rig.home, env: cliEnv() })
    expect(JSON.parse(again.stdout)).toMatchObject({ id: lease.id, released: false })
  })
})
