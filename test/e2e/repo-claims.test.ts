import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, type CliHome } from '../support/cli.js'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { createFakeHetzner, serveFake, type FakeHetzner, type ServedFake } from '../support/fake-hetzner.js'
import { gitRepo, homePerTest } from '../support/fixtures.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

/** Two checkouts of the same project on one machine, with one CLI home between them. */
function twoCheckouts(): { a: string; b: string; remove(): void } {
  const a = gitRepo('crabbox-claim-a-', { 'which.txt': 'checkout a\n' })
  const b = gitRepo('crabbox-claim-b-', { 'which.txt': 'checkout b\n' })
  return { a, b, remove: () => [a, b].forEach((dir) => rmSync(dir, { recursive: true, force: true })) }
}

describe('repo claims through the broker (static pool)', () => {
  const rig = brokerWithStaticHosts({ token: 'e2e-claims-token', owner: 'claims@example.com', names: ['e2e-claims'] })
  let repos: ReturnType<typeof twoCheckouts>
  let leaseId = ''
  const from = (cwd: string, args: string[]) => runCli(args, { home: rig.home, cwd, env: rig.cliEnv() })

  beforeAll(() => {
    repos = twoCheckouts()
  })
  afterAll(async () => {
    if (leaseId) await rig.api('POST', `/v1/leases/${leaseId}/release`, { delete: true }).catch(() => undefined)
    repos?.remove()
  })

  it('a lease warmed in one checkout is refused from another until --reclaim moves it', async () => {
    const warm = await from(repos.a, ['warmup', '--json'])
    expect(warm.code, warm.stderr).toBe(0)
    leaseId = JSON.parse(warm.stdout).id
    const claim = JSON.parse(readFileSync(join(rig.home.env.XDG_STATE_HOME, 'crabbox', 'repo-claims', `${leaseId}.json`), 'utf8'))
    expect(claim).toMatchObject({ leaseID: leaseId, provider: 'static', repoRoot: repos.a })

    // The claiming checkout uses it as before.
    const own = await from(repos.a, ['run', '--id', leaseId, '--', 'cat', 'which.txt'])
    expect(own.code, own.stderr).toBe(0)
    expect(own.stdout).toBe('checkout a\n')

    // Another checkout: exit 2 naming the claiming checkout and --reclaim, before anything ran there.
    for (const args of [
      ['run', '--id', leaseId, '--', 'cat', 'which.txt'],
      ['ssh', '--id', leaseId, '--', 'echo reached'],
    ]) {
      const refused = await from(repos.b, args)
      expect(refused.code, args[0]).toBe(2)
      expect(refused.stderr).toContain(`lease ${leaseId}`)
      expect(refused.stderr).toContain(`claimed by another checkout: ${repos.a}`)
      expect(refused.stderr).toContain('--reclaim')
      expect(refused.stdout).toBe('')
    }

    const taken = await from(repos.b, ['run', '--id', leaseId, '--reclaim', '--', 'cat', 'which.txt'])
    expect(taken.code, taken.stderr).toBe(0)
    expect(taken.stdout).toBe('checkout b\n')
    expect(taken.stderr).toContain(`reclaimed ${leaseId}`)
    expect(taken.stderr).toContain(`from ${repos.a}`)

    // Now the first checkout is the other one.
    const back = await from(repos.a, ['ssh', '--id', leaseId, '--', 'echo reached'])
    expect(back.code).toBe(2)
    expect(back.stderr).toContain(`claimed by another checkout: ${repos.b}`)
    const ssh = await from(repos.b, ['ssh', '--id', leaseId, '--', 'echo reached'])
    expect(ssh).toMatchObject({ code: 0, stdout: 'reached\n' })
  })

  it('doctor --id runs the remote doctor on the lease over SSH', async () => {
    expect(leaseId).not.toBe('')
    const human = await from(repos.b, ['doctor', '--id', leaseId])
    expect(human.stdout).toMatch(new RegExp(`^ok\\s+remote lease\\s+${leaseId}`, 'm'))
    expect(human.stdout).toMatch(/^ok\s+remote ssh\s+\S+@\S+:\d+$/m)
    expect(human.stdout).toMatch(/^ok\s+remote tools\s+sh, bash, tar, git, gzip$/m)
    expect(human.stdout).toMatch(/^ok\s+remote disk\s+[\d.]+ [KMGT]iB free on \//m)
    expect(human.stdout).toMatch(new RegExp(`^ok\\s+remote work root\\s+${rig.host.home}/work is writable$`, 'm'))

    const json = await from(repos.b, ['doctor', '--id', leaseId, '--json'])
    const report = JSON.parse(json.stdout)
    const remote = report.checks.filter((c: { name: string }) => c.name.startsWith('remote '))
    expect(remote.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
      ['remote lease', true],
      ['remote ssh', true],
      ['remote tools', true],
      ['remote disk', true],
      ['remote work root', true],
    ])
    // doctor only looks: it does not claim the lease.
    expect((await from(repos.b, ['ssh', '--id', leaseId, '--', 'true'])).code).toBe(0)

    const missing = await from(repos.b, ['doctor', '--id', 'cbx_00000000beef', '--json'])
    expect(missing.code).toBe(1)
    expect(JSON.parse(missing.stdout).checks).toContainEqual(expect.objectContaining({ name: 'remote lease', ok: false }))
  })

  it('stop forgets the claim', async () => {
    const stopped = await from(repos.a, ['stop', leaseId])
    expect(stopped.code, stopped.stderr).toBe(0)
    expect(() => readFileSync(join(rig.home.env.XDG_STATE_HOME, 'crabbox', 'repo-claims', `${leaseId}.json`))).toThrow()
    leaseId = ''
  })
})

describe('repo claims in direct mode (an existing SSH host)', () => {
  const home = homePerTest()
  let host: SshHost
  let repos: ReturnType<typeof twoCheckouts>

  beforeAll(async () => {
    host = await sshHost({ ports: [22], name: 'claims-direct' })
    repos = twoCheckouts()
  })
  afterAll(async () => {
    await host?.stop()
    repos?.remove()
  })

  it('the host warmed in one checkout is refused from another (run and ssh) until --reclaim', async () => {
    const h: CliHome = home()
    const env = { CRABBOX_SSH_KEY: host.privateKeyPath, CRABBOX_NO_AGENT: '1', CRABBOX_STATIC_WORK_ROOT: `${host.home}/work` }
    const at = ['--provider', 'ssh', '--static-host', host.address]
    const from = (cwd: string, args: string[], extra: Record<string, string> = {}) =>
      runCli(args, { home: h, cwd, env: { ...env, ...extra } })

    const warm = await from(repos.a, ['warmup', ...at, '--json'])
    expect(warm.code, warm.stderr).toBe(0)
    const id = JSON.parse(warm.stdout).id as string

    // The same host, leased again from the other checkout: refused, naming the first.
    const run = await from(repos.b, ['run', ...at, '--', 'cat', 'which.txt'])
    expect(run.code).toBe(2)
    expect(run.stderr).toContain(`lease ${id}`)
    expect(run.stderr).toContain(`claimed by another checkout: ${repos.a}`)
    const ssh = await from(repos.b, ['ssh', ...at, '--', 'echo reached'])
    expect(ssh.code).toBe(2)
    expect(ssh.stderr).toContain('--reclaim')

    const reclaimed = await from(repos.b, ['warmup', ...at, '--reclaim', '--timing-json'])
    expect(reclaimed.code, reclaimed.stderr).toBe(0)
    expect(reclaimed.stdout).toMatch(/^warmup complete total=\S+$/m)
    const timing = JSON.parse(reclaimed.stderr.trim().split('\n').at(-1)!)
    expect(timing).toMatchObject({ provider: 'ssh', leaseId: id, syncSkipped: true, exitCode: 0 })
    expect(typeof timing.totalMs).toBe('number')
    const used = await from(repos.b, ['run', ...at, '--keep', '--', 'cat', 'which.txt'])
    expect(used.code, used.stderr).toBe(0)
    expect(used.stdout).toBe('checkout b\n')
    expect((await from(repos.a, ['run', '--id', id, '--', 'true'])).code).toBe(2)

    expect((await from(repos.b, ['stop', id])).code).toBe(0)
    const afterStop = await from(repos.a, ['ssh', ...at, '--', 'echo reached'])
    expect(afterStop).toMatchObject({ code: 0, stdout: 'reached\n' })
  })

  it('doctor --id on a direct lease whose work root cannot be written: a failed check with its fix, exit 1', async () => {
    const env = {
      CRABBOX_SSH_KEY: host.privateKeyPath,
      CRABBOX_NO_AGENT: '1',
      CRABBOX_PROVIDER: 'ssh',
      CRABBOX_STATIC_HOST: host.address,
      CRABBOX_STATIC_WORK_ROOT: '/proc/crabbox-nowhere',
    }
    const h = home()
    const warm = await runCli(['warmup', '--json'], { home: h, cwd: repos.a, env })
    expect(warm.code, warm.stderr).toBe(0)
    const id = JSON.parse(warm.stdout).id as string
    const doctor = await runCli(['doctor', '--id', id, '--provider', 'ssh'], { home: h, cwd: repos.a, env })
    expect(doctor.code).toBe(1)
    expect(doctor.stdout).toMatch(/^ok\s+provider ssh/m)
    expect(doctor.stdout).toMatch(/^ok\s+remote tools/m)
    // Its nearest existing folder is /proc, a file system with nothing free.
    expect(doctor.stdout).toMatch(/^FAIL\s+remote disk\s+0 B free on \/proc$/m)
    expect(doctor.stdout).toMatch(/^FAIL\s+remote work root\s+\/proc\/crabbox-nowhere is not writable/m)
    expect(doctor.stdout).toContain('fix: Set workRoot')
    expect(doctor.stderr).toContain('doctor found 2 problems')
    expect((await runCli(['stop', id], { home: h, env })).code).toBe(0)
  })

  it('warmup --actions-runner without a GitHub token: exit 3 naming GH_TOKEN, before anything is leased', async () => {
    const h = home()
    const env = { GH_TOKEN: '', GITHUB_TOKEN: '', PATH: '/usr/bin:/bin', CRABBOX_ACTIONS_REPO: 'acme/app' }
    const result = await runCli(['warmup', '--actions-runner'], { home: h, env })
    expect(result.code).toBe(3)
    expect(result.stderr).toContain('no GitHub token')
    expect(result.stderr).toContain('GH_TOKEN')
    expect(JSON.parse((await runCli(['list', '--json'], { home: h, env })).stdout)).toEqual([])
  })
})

describe('list with the admin token: the provider pool, orphans marked', () => {
  const adminToken = 'e2e-pool-admin'
  let fake: FakeHetzner
  let served: ServedFake
  let broker: BrokerHandle
  let keyDir: string
  const home = homePerTest()

  beforeAll(async () => {
    fake = createFakeHetzner()
    served = await serveFake(fake.handler)
    broker = await startBroker({
      env: {
        CRABBOX_SHARED_TOKEN: 'e2e-pool-shared',
        CRABBOX_ADMIN_TOKEN: adminToken,
        CRABBOX_HETZNER_TOKEN: fake.token,
        CRABBOX_HETZNER_API_URL: `${served.url}/v1`,
      },
    })
    keyDir = mkdtempSync(join(tmpdir(), 'crabbox-pool-key-'))
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pool', '-f', join(keyDir, 'id_ed25519')])
  })
  afterAll(async () => {
    await broker?.stop()
    await served?.close()
    if (keyDir) rmSync(keyDir, { recursive: true, force: true })
  })

  it('pairs each machine with its live lease and marks the rest orphan=<reason>', async () => {
    const response = await fetch(`${broker.url}/v1/leases`, {
      method: 'POST',
      headers: { authorization: 'Bearer e2e-pool-shared', 'x-crabbox-owner': 'pool@example.com', 'content-type': 'application/json' },
      body: JSON.stringify({
        provider: 'hetzner',
        class: 'fast',
        leaseID: 'cbx_e2e000900001',
        sshPublicKey: readFileSync(join(keyDir, 'id_ed25519.pub'), 'utf8').trim(),
      }),
    })
    expect(response.status).toBe(201)
    fake.seedServer({ name: 'crabbox-unlabelled', labels: { crabbox: 'true' } })
    fake.seedServer({ name: 'crabbox-stale', labels: { crabbox: 'true', lease: 'cbx_e2e00090dead' } })

    const h = home()
    const env = { CRABBOX_COORDINATOR: broker.url, CRABBOX_COORDINATOR_TOKEN: 'e2e-pool-shared', CRABBOX_OWNER: 'pool@example.com' }
    const admin = await runCli(['list', '--json'], { home: h, env: { ...env, CRABBOX_ADMIN_TOKEN: adminToken } })
    expect(admin.code, admin.stderr).toBe(0)
    const machines = JSON.parse(admin.stdout) as Array<{ name: string; provider: string; lease?: string; owner?: string; orphan?: string }>
    const byName = Object.fromEntries(machines.map((m) => [m.name, m]))
    const leased = machines.find((m) => m.lease === 'cbx_e2e000900001')
    expect(leased).toMatchObject({ provider: 'hetzner', owner: 'pool@example.com' })
    expect(leased?.orphan).toBeUndefined()
    expect(byName['crabbox-unlabelled']).toMatchObject({ orphan: 'missing-lease-label' })
    expect(byName['crabbox-stale']).toMatchObject({ lease: 'cbx_e2e00090dead', orphan: 'no-active-lease' })

    const lines = await runCli(['pool', 'list', '--provider', 'hetzner'], { home: h, env: { ...env, CRABBOX_ADMIN_TOKEN: adminToken } })
    expect(lines.code, lines.stderr).toBe(0)
    expect(lines.stdout).toMatch(/^crabbox-unlabelled\s+hetzner\s+running\s+.*\borphan=missing-lease-label$/m)
    expect(lines.stdout).toMatch(/^crabbox-stale\s+hetzner\s+.*\blease=cbx_e2e00090dead\s+orphan=no-active-lease$/m)
    expect(lines.stdout).toMatch(/\blease=cbx_e2e000900001\s+owner=pool@example\.com$/m)

    // Without the admin token: the caller's leases, as before. A refused token says so and does the same.
    const mine = await runCli(['list', '--json'], { home: h, env })
    expect(JSON.parse(mine.stdout).map((l: { id: string }) => l.id)).toEqual(['cbx_e2e000900001'])
    const refused = await runCli(['list', '--json'], { home: h, env: { ...env, CRABBOX_ADMIN_TOKEN: 'not-the-admin-token' } })
    expect(refused.code, refused.stderr).toBe(0)
    expect(refused.stderr).toContain('refused the admin token')
    expect(JSON.parse(refused.stdout).map((l: { id: string }) => l.id)).toEqual(['cbx_e2e000900001'])
  })
})
