import { execFile } from 'node:child_process'
import { rmSync } from 'node:fs'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

const exec = promisify(execFile)

/**
 * `crabbox broker dev` (real workerd) with a static pool of two real sshd hosts:
 * both are handed out, a third lease is refused, a release frees a host.
 */
describe('broker static pool', () => {
  const rig = brokerWithStaticHosts({ token: 'e2e-shared', owner: 'pool@example.com', hosts: [{ ports: [22] }, { ports: [22] }] })

  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(rig.broker.url + path, {
      method,
      headers: { authorization: `Bearer ${rig.token}`, 'x-crabbox-owner': rig.owner, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return { status: response.status, body: (await response.json()) as any }
  }
  const create = () =>
    call('POST', '/v1/leases', {
      provider: 'static',
      sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e e2e',
    })

  it('hands out both hosts, refuses a third lease, and frees a host on release', async () => {
    const { hosts } = rig
    const first = await create()
    const second = await create()
    expect([first.status, second.status]).toEqual([201, 201])
    const leased = [first.body.lease, second.body.lease]
    expect(leased.map((l) => l.host).sort()).toEqual(hosts.map((h) => h.address).sort())
    for (const lease of leased) {
      const host = hosts.find((h) => h.address === lease.host)!
      expect(lease).toMatchObject({
        provider: 'static',
        state: 'active',
        sshPort: String(host.ports[0]),
        sshUser: host.user,
        workRoot: `${host.home}/work`,
      })
    }

    const third = await create()
    expect(third.status).toBe(503)
    expect(third.body.error).toBe('no_capacity')

    // A handed-out host is a real SSH host, reachable with a key already authorized there.
    const target = hosts.find((h) => h.address === leased[0].host)!
    const { stdout } = await exec('ssh', [
      '-i',
      target.privateKeyPath,
      '-p',
      leased[0].sshPort,
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
      `${leased[0].sshUser}@${leased[0].host}`,
      'echo reachable',
    ])
    expect(stdout.trim()).toBe('reachable')

    const released = await call('POST', `/v1/leases/${leased[0].id}/release`, { delete: true })
    expect(released.body.lease.state).toBe('released')
    const again = await create()
    expect(again.status).toBe(201)
    expect(again.body.lease.host).toBe(leased[0].host)

    const pool = await call('GET', '/v1/leases?state=active')
    expect(pool.body.leases.map((l: { id: string }) => l.id).sort()).toEqual([leased[1].id, again.body.lease.id].sort())
  })
})

/**
 * Pool entries that carry the host's key: the lease hands it to the CLI, which pins it
 * instead of trusting the first key it sees. Two hosts; both entries carry the second
 * host's key, so the first entry ('wrong') names a host whose sshd offers another key.
 */
describe('broker static pool with host keys', () => {
  const rig = brokerWithStaticHosts({
    token: 'e2e-host-keys',
    owner: 'pinned@example.com',
    hosts: [{ ports: [22] }, { ports: [22] }],
    names: ['wrong', 'right'],
    entry: (_host, hosts) => ({ hostKey: hosts[1]!.hostPublicKey }),
  })
  let repo = ''
  beforeAll(() => {
    repo = gitRepo('crabbox-host-keys-')
  })
  afterAll(() => rmSync(repo, { recursive: true, force: true }))

  const run = async () => {
    // The CLI's key works on both hosts: only the host key can make the run fail.
    await rig.hosts[1]!.authorize(rig.hosts[0]!.publicKey)
    return runCli(['run', '--no-sync', '--', 'echo', 'pinned run'], { home: rig.home, cwd: repo, env: rig.cliEnv() })
  }

  it('a host whose key is not the pool entry’s fails with exit 7 (host key changed), never trusted on first use', async () => {
    const result = await run()
    expect(result.code, result.stderr).toBe(7)
    expect(result.stderr).toMatch(/host key for \S+ changed/)
    expect(result.stderr).toContain(rig.hosts[0]!.hostKeyFingerprint)
    expect(result.stderr).toContain(rig.hosts[1]!.hostKeyFingerprint)
    expect(result.stdout).not.toContain('pinned run')
    // The failed run gave its host back.
    expect((await rig.api('GET', '/v1/leases?state=active')).leases).toEqual([])
  })

  it('a host offering the pool entry’s key runs', async () => {
    // Hold the first entry, so the CLI gets the second.
    const { lease: held } = await rig.api('POST', '/v1/leases', { provider: 'static', sshPublicKey: rig.hosts[0]!.publicKey })
    expect(held).toMatchObject({ serverName: 'wrong', hostKeys: [rig.hosts[1]!.hostPublicKey] })
    try {
      const result = await run()
      expect(result.code, result.stderr).toBe(0)
      expect(result.stdout).toBe('pinned run\n')
    } finally {
      await rig.api('POST', `/v1/leases/${held.id}/release`, { delete: true })
    }
  })
})
