import { afterEach, describe, expect, it } from 'vitest'
import { createFakeHetzner, serveFake, type ServedFake } from '../support/fake-hetzner.js'
import {
  createHetznerApi,
  createHetznerMachine,
  deleteHetznerMachine,
  findHetznerMachine,
  hetznerHourlyUSD,
  touchHetznerMachine,
} from '../../src/cloud/hetzner-api.js'
import { CloudApiError, machineLabels, providerKeyName } from '../../src/cloud/cloud-machines.js'

const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVuaXQtdGVzdC1rZXktbWF0ZXJpYWwtMDAwMDAwMDAw crabbox cbx_0123456789ab'
const leaseId = 'cbx_0123456789ab'
const fast = { pollIntervalMs: 1, sleep: async () => {} }

function input(overrides: Partial<Parameters<typeof createHetznerMachine>[1]> = {}) {
  return {
    leaseId,
    name: 'crabbox-blue-crab-1234abcd',
    labels: machineLabels({
      provider: 'hetzner',
      leaseId,
      slug: 'blue-crab',
      owner: 'peter@example.com',
      org: 'openclaw',
      profile: 'default',
      class: 'standard',
      serverType: 'ccx33',
      target: 'linux',
      keep: false,
      providerKey: providerKeyName(leaseId),
      ttlSeconds: 5400,
      idleTimeoutSeconds: 1800,
      createdAt: new Date('2026-01-01T00:00:00Z'),
    }),
    serverTypes: ['ccx33', 'cpx62', 'cx53'],
    location: 'fsn1',
    image: 'ubuntu-24.04',
    userData: '#cloud-config\n',
    sshPublicKey: publicKey,
    keyName: providerKeyName(leaseId),
    ...overrides,
  }
}

describe('Hetzner client over real HTTP on loopback', () => {
  let served: ServedFake | undefined
  afterEach(async () => {
    await served?.close()
    served = undefined
  })

  it('creates, finds, prices and deletes a server through the JSON API', async () => {
    const fake = createFakeHetzner()
    served = await serveFake(fake.handler)
    const api = createHetznerApi({ token: fake.token, apiUrl: `${served.url}/v1`, ...fast })
    const { machine } = await createHetznerMachine(api, input())
    expect(machine.host).toMatch(/^203\.0\.113\./)
    expect(machine.serverType).toBe('ccx33')
    expect((await findHetznerMachine(api, leaseId))?.id).toBe(machine.id)
    expect(await hetznerHourlyUSD(api, 'ccx33', 'fsn1', 1.1)).toBeCloseTo(0.0904 * 1.1, 6) // gross EUR (incl. VAT) × rate
    await deleteHetznerMachine(api, { id: machine.id, leaseId })
    expect(fake.servers.size).toBe(0)
    expect(fake.keys.size).toBe(0)
  })

  it('a create whose connection drops after the server was made adopts that server', async () => {
    const fake = createFakeHetzner()
    served = await serveFake(fake.handler)
    fake.inject({ method: 'POST', path: '/servers', kind: 'lost' })
    const api = createHetznerApi({ token: fake.token, apiUrl: `${served.url}/v1`, ...fast })
    const result = await createHetznerMachine(api, input())
    expect(result.adopted).toBe(true)
    expect(fake.servers.size).toBe(1)
    expect(fake.count('POST', '/servers')).toBe(1)
  })

  it('rate limits and 5xx are retried; delete keeps going until Hetzner confirms', async () => {
    const fake = createFakeHetzner()
    served = await serveFake(fake.handler)
    fake.inject({ method: 'GET', path: '/servers', kind: 'error', status: 429, times: 2 })
    const api = createHetznerApi({ token: fake.token, apiUrl: `${served.url}/v1`, ...fast })
    const { machine } = await createHetznerMachine(api, input())
    fake.inject({ method: 'DELETE', path: `/servers/${machine.id}`, kind: 'error', status: 503, times: 3 })
    await deleteHetznerMachine(api, { id: machine.id, leaseId })
    expect(fake.count('DELETE', `/servers/${machine.id}`)).toBe(4)
    expect(fake.servers.size).toBe(0)
    // Already gone is success, not an error.
    await deleteHetznerMachine(api, { id: machine.id, leaseId })
  })

  it('an SSH key of the same name but another public key is refused, not replaced', async () => {
    const fake = createFakeHetzner()
    served = await serveFake(fake.handler)
    fake.seedKey(providerKeyName(leaseId), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB other')
    const api = createHetznerApi({ token: fake.token, apiUrl: `${served.url}/v1`, ...fast })
    const error = await createHetznerMachine(api, input()).catch((e: unknown) => e)
    expect((error as Error).message).toMatch(/already exists with a different public key/)
    expect(fake.servers.size).toBe(0)
    expect(fake.keys.size).toBe(1)
  })

  it('a create that times out without reaching Hetzner is repeated only after the lease label shows no server', async () => {
    const fake = createFakeHetzner()
    served = await serveFake(fake.handler)
    fake.inject({ method: 'POST', path: '/servers', kind: 'timeout' })
    const api = createHetznerApi({ token: fake.token, apiUrl: `${served.url}/v1`, ...fast, timeoutMs: 200 })
    const result = await createHetznerMachine(api, input())
    expect(result.adopted).toBe(false)
    expect(fake.count('POST', '/servers')).toBe(2)
    expect(fake.servers.size).toBe(1)
    const lookups = fake.calls.filter((c) => c.method === 'GET' && c.path === '/servers')
    expect(lookups.length).toBeGreaterThanOrEqual(2)
    fake.releaseHung()
  })

  it('a heartbeat moves expires_at forward but never past the TTL', async () => {
    const fake = createFakeHetzner()
    served = await serveFake(fake.handler)
    const api = createHetznerApi({ token: fake.token, apiUrl: `${served.url}/v1`, ...fast })
    const { machine } = await createHetznerMachine(api, input())
    const created = Number(machine.labels.created_at)
    await touchHetznerMachine(api, machine.id, new Date((created + 1000) * 1000))
    expect(fake.servers.get(Number(machine.id))!.labels).toMatchObject({
      last_touched_at: String(created + 1000),
      expires_at: String(created + 1000 + 1800),
      lease: leaseId,
      keep: 'false',
    })
    await touchHetznerMachine(api, machine.id, new Date((created + 5000) * 1000))
    expect(fake.servers.get(Number(machine.id))!.labels.expires_at).toBe(String(created + 5400))
  })

  it('a wrong token is an auth error, not a retry loop', async () => {
    const fake = createFakeHetzner()
    served = await serveFake(fake.handler)
    const api = createHetznerApi({ token: 'wrong', apiUrl: `${served.url}/v1`, ...fast })
    const error = await createHetznerMachine(api, input()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CloudApiError)
    expect((error as CloudApiError).category).toBe('auth')
    expect(fake.calls).toHaveLength(1)
  })
})
