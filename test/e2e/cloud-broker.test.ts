import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { createFakeHetzner, serveFake, type FakeHetzner, type ServedFake } from '../support/fake-hetzner.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'

const exec = promisify(execFile)

/**
 * The broker under real workerd (`crabbox broker dev`) with its Hetzner
 * secrets pointing at the fake on loopback: the provider registry, the
 * Worker's outbound fetch and the lease flow all run for real, and the
 * server the fake hands out is a real sshd host that accepts exactly the key
 * written into the cloud-init user data.
 */
describe('brokered Hetzner leases under workerd', () => {
  let host: SshHost
  let fake: FakeHetzner
  let served: ServedFake
  let broker: BrokerHandle
  let keyDir: string

  beforeAll(async () => {
    host = await sshHost({ ports: [2222, 22], name: 'brokered' })
    fake = createFakeHetzner({
      addressFor: () => host.address,
      onCreate: async (server) => {
        const config = parse(server.user_data) as { users: Array<string | { name: string; ssh_authorized_keys: string[] }> }
        for (const user of config.users) if (typeof user === 'object') for (const key of user.ssh_authorized_keys) await host.authorize(key)
      },
    })
    served = await serveFake(fake.handler)
    broker = await startBroker({
      env: {
        CRABBOX_SHARED_TOKEN: 'e2e-shared',
        CRABBOX_ADMIN_TOKEN: 'e2e-admin',
        CRABBOX_HETZNER_TOKEN: fake.token,
        CRABBOX_HETZNER_API_URL: `${served.url}/v1`,
      },
    })
    keyDir = mkdtempSync(join(tmpdir(), 'crabbox-brokered-key-'))
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'brokered', '-f', join(keyDir, 'id_ed25519')])
  })

  afterAll(async () => {
    await broker?.stop()
    await served?.close()
    await host?.stop()
    rmSync(keyDir, { recursive: true, force: true })
  })

  const call = async (method: string, path: string, body?: unknown, token = 'e2e-shared') => {
    const response = await fetch(broker.url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, 'x-crabbox-owner': 'cloud@example.com', 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return { status: response.status, body: (await response.json()) as any }
  }

  it('creates a labelled server whose only key is the lease key, lists it in the pool, and deletes it with its key on release', async () => {
    const publicKey = readFileSync(join(keyDir, 'id_ed25519.pub'), 'utf8').trim()
    const created = await call('POST', '/v1/leases', {
      provider: 'hetzner',
      class: 'fast',
      sshPublicKey: publicKey,
      leaseID: 'cbx_e2e000c10ad0',
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const lease = created.body.lease
    expect(lease).toMatchObject({
      provider: 'hetzner',
      state: 'active',
      host: host.address,
      serverType: 'ccx43',
      sshPort: '2222',
      sshUser: 'crabbox',
    })
    const [server] = [...fake.servers.values()]
    expect(server.labels).toMatchObject({ lease: 'cbx_e2e000c10ad0', owner: 'cloud_example.com', crabbox: 'true' })

    const { stdout } = await exec('ssh', [
      '-i',
      join(keyDir, 'id_ed25519'),
      '-p',
      lease.sshPort,
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
      `${lease.sshUser}@${lease.host}`,
      'echo reachable',
    ])
    expect(stdout.trim()).toBe('reachable')

    const pool = await call('GET', '/v1/pool?provider=hetzner', undefined, 'e2e-admin')
    expect(pool.status).toBe(200)
    // The pool wire shape carries Hetzner's numeric server ID.
    expect(pool.body.machines.map((m: { id: string | number }) => String(m.id))).toEqual([String(server.id)])

    const released = await call('POST', `/v1/leases/${lease.id}/release`, { delete: true })
    expect(released.body.lease.state).toBe('released')
    expect(fake.servers.size).toBe(0)
    expect(fake.keys.size).toBe(0)
  })
})
