import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
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
