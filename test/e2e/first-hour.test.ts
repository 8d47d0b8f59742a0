import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { execFile, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli, spawnCli, type CliHome } from '../support/cli.js'
import { gitRepo, homePerTest, until } from '../support/fixtures.js'
import { processesMatching } from '../support/processes.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

/**
 * The promises a new user meets in the first hour: each test reproduces one
 * broken promise (leaked leases, `run --json`, the static-pool key, typos in
 * lease names, TTLs, the broker's provider choice, a token without a URL …).
 */

const repos: string[] = []
const repo = () => {
  const made = gitRepo('crabbox-first-hour-', { 'hello.txt': 'hello\n' })
  repos.push(made)
  return made
}
const mentioning = (home: CliHome) => processesMatching((p) => p.cmdline.includes(home.dir))
const localLeases = (home: CliHome) => {
  const dir = join(home.env.XDG_STATE_HOME, 'crabbox', 'local')
  return existsSync(dir) ? readdirSync(dir) : []
}
const exec = promisify(execFile)
const noAgent = { CRABBOX_NO_AGENT: '1', NODE_EXTRA_CA_CERTS: undefined }

afterAll(() => {
  for (const made of repos) rmSync(made, { recursive: true, force: true })
})

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('the first hour without a broker', () => {
  const home = homePerTest()
  afterAll(() => {
    for (const pid of processesMatching((p) => p.cmdline.includes('crabbox-home-') && p.cmdline.includes('first-hour'))) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  })

  it('run --json prints one result object on stdout for success, a remote failure and a crabbox failure', async () => {
    const h = home()
    const cwd = repo()
    const ok = await runCli(['run', '--json', '--', 'echo', 'hi'], { home: h, cwd, env: noAgent })
    expect(ok.code, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ provider: 'local', exitCode: 0, failure: null })
    // The command's stdout is kept apart from the result: it goes to stderr.
    expect(ok.stderr).toMatch(/^hi$/m)

    // 4 is also crabbox's "not found": the result says it was the remote command's.
    const remote = await runCli(['run', '--json', '--', 'sh', '-c', 'echo out; exit 4'], { home: h, cwd, env: noAgent })
    expect(remote.code).toBe(4)
    expect(JSON.parse(remote.stdout)).toMatchObject({ exitCode: 4, failure: 'remote' })

    const own = await runCli(['run', '--json', '--id', 'no-such-crab', '--', 'true'], { home: h, cwd, env: noAgent })
    expect(own.code).toBe(4)
    expect(JSON.parse(own.stdout)).toMatchObject({ exitCode: 4, failure: 'crabbox', error: { code: 'not_found' } })

    const usage = await runCli(['run', '--json', '--ttl', '10', '--', 'true'], { home: h, cwd, env: noAgent })
    expect(usage.code).toBe(2)
    expect(JSON.parse(usage.stdout)).toMatchObject({ exitCode: 2, failure: 'crabbox' })
    expect(localLeases(h)).toEqual([])
  })

  it('the agent skill file init writes describes run --json as it is', async () => {
    const cwd = repo()
    const init = await runCli(['init'], { home: home(), cwd })
    expect(init.code, init.stderr).toBe(0)
    const skill = readFileSync(join(cwd, '.agents', 'skills', 'crabbox', 'SKILL.md'), 'utf8')
    expect(skill).toMatch(/crabbox run --json -- /)
    expect(skill).toMatch(/"failure"/)
    expect(skill).toMatch(/stdout goes to stderr/)
  })

  it('stderr closing early (`2>&1 | head`) releases the lease and exits 141', async () => {
    const h = home()
    const child = spawnCli(
      ['run', '--no-sync', '--', 'sh', '-c', 'i=0; while [ $i -lt 200000 ]; do echo "line $i" >&2; i=$((i+1)); done; sleep 60'],
      {
        home: h,
        cwd: repo(),
        env: noAgent,
      },
    )
    child.stdout!.resume()
    let seen = ''
    const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d) => {
        seen += d
        // Like `head -3`: read a little of the command's output, then go away.
        if (seen.includes('line 10')) {
          child.stderr!.destroy()
          resolve()
        }
      })
      void closed.then((c) => reject(new Error(`the CLI exited ${c} before the command's output:\n${seen}`)))
    })
    const code = await closed
    expect(code).toBe(141)
    await until('the local runner to go', async () => localLeases(h).length === 0 && mentioning(h).length === 0, 15_000)
  })

  it('a lease name nobody knows is exit 4 with the closest live slug; a released one stays exit 0', async () => {
    const h = home()
    const cwd = repo()
    const warm = await runCli(['warmup', '--json'], { home: h, cwd, env: noAgent })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    const typo = lease.slug.slice(0, -1)
    const wrong = await runCli(['stop', typo], { home: h, cwd, env: noAgent })
    expect(wrong.code).toBe(4)
    expect(wrong.stderr).toContain(`no lease named ${typo}`)
    expect(wrong.stderr).toContain(`did you mean ${lease.slug}?`)
    expect(localLeases(h)).toEqual([lease.id])

    expect((await runCli(['stop', lease.slug], { home: h, cwd, env: noAgent })).code).toBe(0)
    for (const name of [lease.slug, lease.id]) {
      const again = await runCli(['stop', name], { home: h, cwd, env: noAgent })
      expect(again.code).toBe(0)
      expect(again.stdout).toMatch(/already released/)
    }
  })

  it('TTLs and idle timeouts need a unit, more than 0 and at most 24h (exit 2, nothing leased)', async () => {
    const h = home()
    const cwd = repo()
    for (const args of [
      ['--ttl', '10'],
      ['--ttl', '0s'],
      ['--ttl', '30d'],
      ['--idle-timeout', '0m'],
      ['--idle-timeout', '25h'],
    ]) {
      const result = await runCli(['run', ...args, '--', 'true'], { home: h, cwd, env: noAgent })
      expect(result.code, args.join(' ')).toBe(2)
      expect(result.stderr).toContain(args[0])
    }
    const fromEnv = await runCli(['run', '--', 'true'], { home: h, cwd, env: { ...noAgent, CRABBOX_TTL: '10' } })
    expect(fromEnv.code).toBe(2)
    expect(fromEnv.stderr).toContain('CRABBOX_TTL')
    writeFileSync(join(cwd, '.crabbox.yaml'), 'idleTimeout: 0\n')
    const fromFile = await runCli(['run', '--', 'true'], { home: h, cwd, env: noAgent })
    expect(fromFile.code).toBe(2)
    expect(fromFile.stderr).toContain('idleTimeout')
    expect(localLeases(h)).toEqual([])
  })

  it('a broker token without a broker URL is a configuration error naming both settings', async () => {
    const h = home()
    const result = await runCli(['run', '--', 'true'], {
      home: h,
      cwd: repo(),
      env: { ...noAgent, CRABBOX_COORDINATOR_TOKEN: 'forgot-the-url' },
    })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('CRABBOX_COORDINATOR_TOKEN')
    expect(result.stderr).toContain('CRABBOX_COORDINATOR ')
    expect(result.stderr).toContain('broker.url')
    expect(localLeases(h)).toEqual([])
  })

  it('SIGTERM, SIGHUP or SIGINT while waiting for SSH end the run at once and free the claim', async () => {
    const h = home()
    const port = await closedPort()
    for (const signal of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) {
      const child = spawnCli(['run', '--provider', 'ssh', '--static-host', '127.0.0.1', '--static-port', String(port), '--', 'true'], {
        home: h,
        cwd: repo(),
        env: { ...noAgent, CRABBOX_SSH_KEY: join(h.dir, 'no-key') },
      })
      child.stdout!.resume()
      let stderr = ''
      const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
      await new Promise<void>((resolve) =>
        child.stderr!.on('data', (d) => {
          stderr += d
          if (stderr.includes('waiting for SSH')) resolve()
        }),
      )
      child.kill(signal)
      expect(await closed, stderr).toBe(130)
      expect(stderr).toMatch(/released static_127_0_0_1/)
      const list = await runCli(['list', '--provider', 'ssh', '--json'], { home: h, env: noAgent })
      expect(JSON.parse(list.stdout)).toEqual([])
    }
  })
})

describe('the first hour with a broker and a static pool', () => {
  const rig = brokerWithStaticHosts({ token: 'e2e-first-hour', owner: 'newcomer@example.com', names: ['first-hour'] })
  const home = homePerTest()
  /** A fresh home whose ~/.ssh/id_ed25519 is the key the pool host accepts (or none). */
  const homeWithKey = (withKey: boolean) => {
    const h = home()
    if (withKey) {
      mkdirSync(join(h.dir, '.ssh'), { mode: 0o700 })
      copyFileSync(rig.host.privateKeyPath, join(h.dir, '.ssh', 'id_ed25519'))
    }
    return h
  }
  const runs = async (): Promise<any[]> => (await rig.api('GET', '/v1/runs?limit=100')).runs

  it('a static pool lease uses ~/.ssh/id_ed25519 when ssh.key is unset, and the broker picks its own default provider', async () => {
    const h = homeWithKey(true)
    const result = await runCli(['run', '--bootstrap-timeout', '60s', '--', 'cat', 'hello.txt'], {
      home: h,
      cwd: repo(),
      env: rig.cliEnv({ CRABBOX_SSH_KEY: undefined, CRABBOX_PROVIDER: undefined }),
    })
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toBe('hello\n')
    expect(result.stderr).toMatch(/✓ leased \S+ \(\S+, static\)/)
  })

  it('a static pool lease uses the ssh-agent keys when there is no key file', async () => {
    const h = homeWithKey(false)
    const socket = join(h.dir, 'agent.sock')
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' })
    try {
      await until('the ssh-agent socket', async () => existsSync(socket), 10_000)
      await exec('ssh-add', [rig.host.privateKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: socket } })
      const result = await runCli(['run', '--bootstrap-timeout', '60s', '--', 'cat', 'hello.txt'], {
        home: h,
        cwd: repo(),
        env: rig.cliEnv({ CRABBOX_SSH_KEY: undefined, SSH_AUTH_SOCK: socket }),
      })
      expect(result.code, result.stderr).toBe(0)
      expect(result.stdout).toBe('hello\n')
    } finally {
      agent.kill()
    }
  })

  it('a key the pool host refuses stops at once: exit 7 naming the key and the setting', async () => {
    const h = homeWithKey(false)
    const started = Date.now()
    const result = await runCli(['run', '--bootstrap-timeout', '90s', '--', 'true'], {
      home: h,
      cwd: repo(),
      env: rig.cliEnv({ CRABBOX_SSH_KEY: undefined, SSH_AUTH_SOCK: undefined }),
    })
    expect(result.code, result.stderr).toBe(7)
    expect(result.stderr).toMatch(/refused the SSH key \S+id_ed25519/)
    expect(result.stderr).toContain('ssh.key')
    expect(result.stderr).not.toMatch(/retrying once/)
    expect(Date.now() - started).toBeLessThan(60_000)
    const active = (await rig.api('GET', '/v1/leases?state=active')).leases
    expect(active).toEqual([])
  })

  it('doctor says when static pool hosts have no key to use', async () => {
    const without = await runCli(['doctor'], {
      home: homeWithKey(false),
      env: rig.cliEnv({ CRABBOX_SSH_KEY: undefined, SSH_AUTH_SOCK: undefined }),
    })
    expect(without.code).not.toBe(0)
    expect(without.stdout + without.stderr).toMatch(/no key for static pool hosts/)
    const withKey = homeWithKey(true)
    const ok = await runCli(['doctor'], { home: withKey, env: rig.cliEnv({ CRABBOX_SSH_KEY: undefined }) })
    expect(ok.stdout + ok.stderr).toContain(join(withKey.dir, '.ssh', 'id_ed25519'))
  })

  it('no capacity and a failing provider are exit 5 with hints that fit', async () => {
    const h = home()
    const cwd = repo()
    const warm = await runCli(['warmup', '--json'], { home: h, cwd, env: rig.cliEnv() })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    try {
      const full = await runCli(['run', '--', 'true'], { home: h, cwd, env: rig.cliEnv() })
      expect(full.code).toBe(5)
      expect(full.stderr).toContain('no_capacity')
      expect(full.stderr).toContain('crabbox list')
      expect(full.stderr).toContain('crabbox stop')
    } finally {
      expect((await runCli(['stop', lease.id], { home: h, cwd, env: rig.cliEnv() })).code).toBe(0)
    }
    const cloud = await runCli(['run', '--provider', 'hetzner', '--', 'true'], { home: h, cwd, env: rig.cliEnv() })
    expect(cloud.code).toBe(5)
    expect(cloud.stderr).toContain('provider_failed')
    expect(cloud.stderr).toContain('--provider')
  })

  it('stop with a typo is exit 4 and suggests the live slug; a released lease stays exit 0 by ID and slug', async () => {
    const h = home()
    const cwd = repo()
    const warm = await runCli(['warmup', '--json'], { home: h, cwd, env: rig.cliEnv() })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    const typo = lease.slug.slice(0, -1)
    const wrong = await runCli(['stop', typo], { home: h, cwd, env: rig.cliEnv() })
    expect(wrong.code).toBe(4)
    expect(wrong.stderr).toContain(`no lease named ${typo}`)
    expect(wrong.stderr).toContain(`did you mean ${lease.slug}?`)
    expect((await rig.api('GET', `/v1/leases/${lease.id}`)).lease.state).toBe('active')
    expect((await runCli(['stop', lease.slug], { home: h, cwd, env: rig.cliEnv() })).code).toBe(0)
    for (const name of [lease.id, lease.slug]) {
      const again = await runCli(['stop', name], { home: h, cwd, env: rig.cliEnv() })
      expect(again.code, again.stderr).toBe(0)
      expect(again.stdout).toMatch(/already released/)
    }
  })

  it('a kept local lease stays listable and stoppable with --provider local when a broker is configured', async () => {
    const h = home()
    const cwd = repo()
    const warm = await runCli(['warmup', '--provider', 'local', '--json'], { home: h, cwd, env: rig.cliEnv() })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    expect(lease.provider).toBe('local')
    const list = await runCli(['list', '--provider', 'local', '--json'], { home: h, cwd, env: rig.cliEnv() })
    expect(JSON.parse(list.stdout).map((l: { id: string }) => l.id)).toEqual([lease.id])
    const stop = await runCli(['stop', lease.slug, '--provider', 'local'], { home: h, cwd, env: rig.cliEnv() })
    expect(stop.code, stop.stderr).toBe(0)
    expect(stop.stdout).toContain(`released ${lease.id}`)
    expect(localLeases(h)).toEqual([])
  })

  it('ssh --id starts in the synced checkout, and without a terminal runs no pty and ends at EOF', async () => {
    const h = home()
    const cwd = repo()
    const warm = await runCli(['warmup', '--json'], { home: h, cwd, env: rig.cliEnv() })
    const lease = JSON.parse(warm.stdout)
    try {
      expect((await runCli(['run', '--id', lease.slug, '--sync-only'], { home: h, cwd, env: rig.cliEnv() })).code).toBe(0)
      const workdir = `${lease.workRoot}/${lease.id}/${cwd.split('/').at(-1)}`
      const pwd = await runCli(['ssh', '--id', lease.slug, '--', 'pwd'], { home: h, cwd, env: rig.cliEnv() })
      expect(pwd.code, pwd.stderr).toBe(0)
      expect(pwd.stdout.trim()).toBe(workdir)
      const shell = await runCli(['ssh', '--id', lease.slug], {
        home: h,
        cwd,
        env: rig.cliEnv(),
        input: 'tty || true\npwd\n',
        timeoutMs: 30_000,
      })
      expect(shell.code, shell.stderr).toBe(0)
      expect(shell.stdout).toMatch(/not a tty/)
      expect(shell.stdout).toContain(workdir)
    } finally {
      await runCli(['stop', lease.id], { home: h, cwd, env: rig.cliEnv() })
    }
  })

  it('runs that fail before a lease exists leave no run record; a wrong token is not "broker unreachable"', async () => {
    const h = home()
    const cwd = repo()
    const before = (await runs()).length
    const missing = await runCli(['run', '--id', 'no-such-crab', '--', 'true'], { home: h, cwd, env: rig.cliEnv() })
    expect(missing.code).toBe(4)
    expect((await runs()).length).toBe(before)
    const wrong = await runCli(['run', '--', 'true'], { home: h, cwd, env: rig.cliEnv({ CRABBOX_COORDINATOR_TOKEN: 'not-the-token' }) })
    expect(wrong.code).toBe(3)
    expect(wrong.stderr).not.toMatch(/unreachable/)
  })

  it('SIGTERM while waiting for SSH releases the lease and records the run as interrupted', async () => {
    const h = homeWithKey(true)
    const cwd = repo()
    const port = rig.host.ports[0]
    // The pool host's sshd moves away: the lease waits for SSH on a closed port.
    await rig.host.restart({ ports: [port + 1] })
    try {
      const child = spawnCli(['run', '--bootstrap-timeout', '5m', '--', 'true'], {
        home: h,
        cwd,
        env: rig.cliEnv({ CRABBOX_SSH_KEY: undefined }),
      })
      child.stdout!.resume()
      let stderr = ''
      const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
      await new Promise<void>((resolve) =>
        child.stderr!.on('data', (d) => {
          stderr += d
          if (stderr.includes('waiting for SSH')) resolve()
        }),
      )
      child.kill('SIGTERM')
      expect(await closed, stderr).toBe(130)
      const leaseId = /leased (cbx_[0-9a-f]{12})/.exec(stderr)![1]
      expect((await rig.api('GET', `/v1/leases/${leaseId}`)).lease.state).toBe('released')
      const [run] = (await rig.api('GET', `/v1/runs?leaseID=${leaseId}`)).runs
      expect(run).toMatchObject({ state: 'failed', exitCode: 130 })
    } finally {
      await rig.host.restart({ ports: [port] })
    }
  })

  it('the broker closes a run whose lease expired under it', async () => {
    const { lease } = await rig.api('POST', '/v1/leases', {
      provider: 'static',
      ttlSeconds: 2,
      sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e e2e',
    })
    const { run } = await rig.api('POST', '/v1/runs', { leaseID: lease.id, command: ['sleep', '600'] })
    expect(run.state).toBe('running')
    await until('the run to be closed', async () => (await rig.api('GET', `/v1/runs/${run.id}`)).run.state === 'failed', 30_000)
    const { events } = await rig.api('GET', `/v1/runs/${run.id}/events`)
    expect(events.at(-1)).toMatchObject({ type: 'run.failed', message: expect.stringMatching(/lease expired/) })
  })
})
