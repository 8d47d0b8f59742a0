import { runDurableObjectAlarm } from 'cloudflare:test'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { fallbackHourlyUSD } from '../../src/cloud/classes.js'
import type { Env } from '../../worker/env.js'
import type { FleetDeps } from '../../worker/fleet/deps.js'
import { runAlarm } from '../../worker/fleet/alarm.js'
import { cleanupState } from '../../worker/fleet/lease-cleanup.js'
import { getLeaseRecord } from '../../worker/fleet/lease-store.js'
import { createFakeHetzner, type FakeHetzner } from '../support/fake-hetzner.js'
import { createFakeEc2, type FakeEc2 } from '../support/fake-ec2.js'
import { api, fleetStub, inFleet, leaseId, shared } from './broker-support.js'
import { fastCloud, restoreProviders, useCloudFakes } from './cloud-support.js'

/**
 * The broker's real lease flow (edge → Fleet object → leases → alarm) with the
 * Hetzner and AWS providers talking to the fakes' JSON/XML wire formats.
 * The fakes are called as `fetch` inside workerd; only the provider registry
 * of the live Fleet object is pointed at them for the test.
 */

const peter = shared('peter@example.com')
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJyb2tlci10ZXN0LWtleS1tYXRlcmlhbC0wMDAwMDAw crabbox test'
let hetzner: FakeHetzner
let ec2: FakeEc2

const useFakes = (env: Record<string, string> = {}, timing: Partial<typeof fastCloud> = {}) => useCloudFakes({ hetzner, ec2 }, env, timing)

async function createLease(body: Record<string, unknown>) {
  return api(peter, 'POST', '/v1/leases', { sshPublicKey: publicKey, leaseID: leaseId(), ...body })
}

const serverDeletes = () => hetzner.count('DELETE', /^\/servers\/\d+$/)
const keyDeletes = () => hetzner.count('DELETE', /^\/ssh_keys\/\d+$/)

beforeEach(async () => {
  hetzner = createFakeHetzner()
  ec2 = createFakeEc2()
  await useFakes()
})

afterEach(async () => {
  hetzner.releaseHung()
  ec2.releaseHung()
  await restoreProviders()
})

describe('brokered Hetzner leases', () => {
  it('a lease creates one server with the lease key in its cloud-init, its labels and the class type', async () => {
    const created = await createLease({
      provider: 'hetzner',
      class: 'standard',
      slug: 'blue-crab',
      keep: false,
      ttlSeconds: 3600,
      idleTimeoutSeconds: 900,
    })
    expect(created.status).toBe(201)
    const lease = created.body.lease
    const [server] = [...hetzner.servers.values()]
    expect(hetzner.servers.size).toBe(1)
    expect(server.server_type).toBe('ccx33')
    expect(lease).toMatchObject({
      provider: 'hetzner',
      state: 'active',
      host: server.ip,
      serverType: 'ccx33',
      cloudID: String(server.id),
      sshUser: 'crabbox',
      sshPort: '2222',
      sshFallbackPorts: ['22'],
    })
    expect(server.labels).toMatchObject({
      crabbox: 'true',
      lease: lease.id,
      slug: 'blue-crab',
      owner: 'peter_example.com',
      org: 'openclaw',
      keep: 'false',
      state: 'leased',
      server_type: 'ccx33',
    })
    expect(Number(server.labels.expires_at)).toBe(Math.floor(Date.parse(lease.createdAt) / 1000) + 900)
    const userData = parse(server.user_data.replace(/^#cloud-config\n/, ''))
    expect(userData.users[1]).toMatchObject({ name: 'crabbox', ssh_authorized_keys: [publicKey] })
    const [key] = [...hetzner.keys.values()]
    expect(key.name).toBe(`crabbox-${lease.id.replace('_', '-')}`)
    expect(server.ssh_keys).toEqual([key.id])
    // Live price: gross EUR for fsn1 × CRABBOX_EUR_TO_USD.
    expect(lease.estimatedHourlyUSD).toBeCloseTo(Number((0.076 * 1.19).toFixed(4)) * 1.1, 6)
  })

  it('falls back to the next server type of the class when Hetzner has no capacity', async () => {
    hetzner.setUnavailable(['ccx33'])
    const created = await createLease({ provider: 'hetzner', class: 'standard' })
    expect(created.status).toBe(201)
    expect(created.body.lease.serverType).toBe('cpx62')
    expect(hetzner.count('POST', '/servers')).toBe(2)
    hetzner.setUnavailable(['ccx33', 'cpx62', 'cx53'])
    const refused = await createLease({ provider: 'hetzner', class: 'standard' })
    expect(refused.status).toBe(503)
    expect(refused.body.error).toBe('no_capacity')
    expect(refused.body.message).toMatch(/ccx33.*cpx62.*cx53/)
    expect(hetzner.servers.size).toBe(1)
  })

  it('release deletes the server and its key exactly once, however often it is repeated', async () => {
    const lease = (await createLease({ provider: 'hetzner', class: 'fast' })).body.lease
    for (let i = 0; i < 2; i++) expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`, { delete: true })).status).toBe(200)
    expect(hetzner.servers.size).toBe(0)
    expect(hetzner.keys.size).toBe(0)
    expect(serverDeletes()).toBe(1)
    expect(keyDeletes()).toBe(1)
  })

  it('expiry deletes the server and its key exactly once even when the alarm fires twice', async () => {
    const lease = (await createLease({ provider: 'hetzner', class: 'standard', ttlSeconds: 600, idleTimeoutSeconds: 300 })).body.lease
    const keyId = [...hetzner.keys.keys()][0]
    await inFleet((deps: FleetDeps) => {
      deps.now = () => new Date(Date.now() + 3_600_000)
    })
    await runDurableObjectAlarm(fleetStub())
    // At-least-once alarms: the same step running again must not delete anything twice.
    await inFleet((deps: FleetDeps) => runAlarm(deps))
    expect((await api(peter, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('expired')
    expect(hetzner.servers.size).toBe(0)
    expect(hetzner.keys.size).toBe(0)
    // Earlier tests' leases expire too (same Fleet object); count only this lease's machine and key.
    expect(hetzner.count('DELETE', `/servers/${lease.cloudID}`)).toBe(1)
    expect(hetzner.count('DELETE', `/ssh_keys/${keyId}`)).toBe(1)
  })

  it('a delete Hetzner keeps failing is retried by the alarm until Hetzner confirms it', async () => {
    const lease = (await createLease({ provider: 'hetzner', class: 'standard' })).body.lease
    hetzner.inject({ method: 'DELETE', path: `/servers/${lease.cloudID}`, kind: 'error', status: 503, times: 6 })
    expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`, { delete: true })).status).toBe(200)
    expect(hetzner.servers.has(Number(lease.cloudID))).toBe(true)
    // Past the retry backoff, the alarm tries again (and again) until the server is gone.
    await inFleet((deps: FleetDeps) => {
      deps.now = () => new Date(Date.now() + 3_600_000)
    })
    await inFleet((deps: FleetDeps) => runAlarm(deps))
    await inFleet((deps: FleetDeps) => runAlarm(deps))
    expect(hetzner.servers.has(Number(lease.cloudID))).toBe(false)
    expect(hetzner.keys.size).toBe(0)
    const attempts = hetzner.count('DELETE', `/servers/${lease.cloudID}`)
    await inFleet((deps: FleetDeps) => runAlarm(deps))
    expect(hetzner.count('DELETE', `/servers/${lease.cloudID}`)).toBe(attempts)
  })

  it('a create whose reply is lost ends with one machine and one lease, and a retried create returns that lease', async () => {
    hetzner.inject({ method: 'POST', path: '/servers', kind: 'lost' })
    const id = leaseId()
    const first = await createLease({ provider: 'hetzner', class: 'standard', leaseID: id })
    expect(first.status).toBe(201)
    hetzner.inject({ method: 'POST', path: '/servers', kind: 'lost-timeout' })
    const again = await createLease({ provider: 'hetzner', class: 'standard', leaseID: id })
    expect([200, 201]).toContain(again.status)
    expect(again.body.lease.id).toBe(id)
    expect(again.body.lease.cloudID).toBe(first.body.lease.cloudID)
    expect(hetzner.servers.size).toBe(1)
    expect((await api(peter, 'GET', '/v1/leases?state=active')).body.leases.filter((l: { id: string }) => l.id === id)).toHaveLength(1)
  })

  it('a create that times out after the server was made adopts it by its lease label', async () => {
    hetzner.inject({ method: 'POST', path: '/servers', kind: 'lost-timeout' })
    const created = await createLease({ provider: 'hetzner', class: 'standard' })
    expect(created.status).toBe(201)
    expect(hetzner.servers.size).toBe(1)
    expect(created.body.lease.cloudID).toBe(String([...hetzner.servers.keys()][0]))
  })

  it('a create whose outcome Hetzner never confirms is a 502, and so is its retry: no lease without a machine', async () => {
    hetzner.inject({ method: 'GET', path: '/servers', kind: 'error', status: 503, times: 1_000 })
    const id = leaseId()
    const first = await createLease({ provider: 'hetzner', class: 'standard', leaseID: id })
    expect(first.status).toBe(502)
    expect(first.body.error).toBe('provider_failed')
    const again = await createLease({ provider: 'hetzner', class: 'standard', leaseID: id })
    expect(again.status).toBe(502)
    expect(again.body.message).toMatch(/new lease ID/)
    expect(hetzner.count('POST', '/servers')).toBe(0)
    expect(await inFleet((deps: FleetDeps) => getLeaseRecord(deps.storage, id)?.state)).toBe('failed')
  })

  it('never deletes a provider key that is not a per-lease crabbox-cbx key', async () => {
    hetzner.seedKey('crabbox-steipete', publicKey)
    const lease = (await createLease({ provider: 'hetzner', class: 'standard', providerKey: 'crabbox-steipete' })).body.lease
    await api(peter, 'POST', `/v1/leases/${lease.id}/release`, { delete: true })
    expect(hetzner.servers.size).toBe(0)
    expect([...hetzner.keys.values()].map((k) => k.name)).toEqual(['crabbox-steipete'])
  })

  it('a public key that is not one OpenSSH line is a 400 before anything is created', async () => {
    const refused = await createLease({ provider: 'hetzner', sshPublicKey: 'ssh-ed25519 AAAA\nruncmd: [reboot]' })
    expect(refused.status).toBe(400)
    expect(refused.body).toMatchObject({ error: 'invalid_request' })
    // Only the price lookup happened: no key import, no server.
    expect(hetzner.calls.filter((c) => c.method !== 'GET')).toHaveLength(0)
  })

  it('a create cut off by the object dying mid-call is expired by the alarm, which deletes the server by its label', async () => {
    // Long enough to look while the call hangs; then the broker gives up and adopts the server.
    await useFakes({}, { timeoutMs: 3_000 })
    await inFleet((_deps: FleetDeps, state) => state.storage.setAlarm(Date.now() + 3_600_000))
    // Hetzner has made the server; its reply has not come back yet.
    hetzner.inject({ method: 'POST', path: '/servers', kind: 'lost-timeout' })
    const id = leaseId()
    const pending = createLease({ provider: 'hetzner', class: 'standard', leaseID: id, ttlSeconds: 600, idleTimeoutSeconds: 300 })
    await expect.poll(() => hetzner.servers.size).toBe(1)
    // Were the object to die now, only its alarm would ever look at this reservation again.
    const armed = await inFleet(async (deps: FleetDeps, state) => ({
      alarm: await state.storage.getAlarm(),
      lease: getLeaseRecord(deps.storage, id)!,
    }))
    expect(armed.lease.state).toBe('provisioning')
    expect(armed.alarm).not.toBeNull()
    expect(armed.alarm!).toBeLessThanOrEqual(Date.parse(armed.lease.expiresAt))
    expect((await pending).status).toBe(201)

    // The dead object's state: still provisioning, no machine on record, nobody retrying.
    await inFleet((deps: FleetDeps) => {
      deps.storage.run(
        "UPDATE leases SET state = 'provisioning', machine = NULL, record = json_set(record, '$.state', 'provisioning', '$.host', '') WHERE id = ?",
        id,
      )
      deps.now = () => new Date(Date.now() + 3_600_000)
    })
    await inFleet((deps: FleetDeps) => runAlarm(deps))
    expect(await inFleet((deps: FleetDeps) => getLeaseRecord(deps.storage, id)?.state)).toBe('expired')
    expect(hetzner.servers.size).toBe(0)
    expect(hetzner.keys.size).toBe(0)
  })

  it("prices a lease from CRABBOX_COST_RATES_JSON, else Hetzner's live price, else the class table", async () => {
    const live = (await createLease({ provider: 'hetzner', class: 'standard' })).body.lease
    expect(live.estimatedHourlyUSD).toBeCloseTo(Number((0.076 * 1.19).toFixed(4)) * 1.1, 6)
    // Hetzner's price API is down: the static table for the type, never a failed lease.
    hetzner.inject({ method: 'GET', path: '/server_types', kind: 'error', status: 503, times: 100 })
    const table = (await createLease({ provider: 'hetzner', class: 'standard' })).body.lease
    expect(table.estimatedHourlyUSD).toBe(fallbackHourlyUSD('hetzner', 'ccx33'))
    await inFleet((deps: FleetDeps) => {
      deps.env = { ...deps.env, CRABBOX_COST_RATES_JSON: JSON.stringify({ 'hetzner:ccx33': '0.5' }) }
    })
    try {
      const configured = (await createLease({ provider: 'hetzner', class: 'standard', ttlSeconds: 7200 })).body.lease
      expect(configured).toMatchObject({ estimatedHourlyUSD: 0.5, maxEstimatedUSD: 1 })
    } finally {
      await inFleet((deps: FleetDeps) => {
        const { CRABBOX_COST_RATES_JSON: _, ...rest } = deps.env
        deps.env = rest as Env
      })
    }
  })

  it("a create still running past its lease's expiry is left to finish, without the alarm spinning meanwhile", async () => {
    await useFakes({}, { timeoutMs: 3_000 })
    // A 1 s lease: below the broker's default floor of 60 s, so the test need not wait a minute.
    await inFleet((deps: FleetDeps) => {
      deps.env = { ...deps.env, CRABBOX_MIN_LEASE_SECONDS: '1' }
    })
    hetzner.inject({ method: 'POST', path: '/servers', kind: 'lost-timeout' })
    const id = leaseId()
    const pending = createLease({ provider: 'hetzner', class: 'standard', leaseID: id, ttlSeconds: 1, idleTimeoutSeconds: 1 })
    await expect.poll(() => hetzner.servers.size).toBe(1)
    await expect
      .poll(async () => Date.now() > Date.parse((await inFleet((deps: FleetDeps) => getLeaseRecord(deps.storage, id)))!.expiresAt))
      .toBe(true)
    const next = await inFleet(async (deps: FleetDeps, state) => {
      await runAlarm(deps)
      return { state: getLeaseRecord(deps.storage, id)!.state, alarm: await state.storage.getAlarm(), now: Date.now() }
    })
    expect(next.state).toBe('provisioning')
    expect(next.alarm! - next.now).toBeGreaterThanOrEqual(500)
    // The create adopts its server; expiry then takes the lease and the server.
    expect((await pending).status).toBe(201)
    await inFleet((deps: FleetDeps) => runAlarm(deps))
    expect(await inFleet((deps: FleetDeps) => getLeaseRecord(deps.storage, id)?.state)).toBe('expired')
    expect(hetzner.servers.size).toBe(0)
  })

  it('makes the server in the location and from the image the lease asks for', async () => {
    const created = await createLease({ provider: 'hetzner', class: 'standard', location: 'nbg1', image: 'debian-12' })
    expect(created.status).toBe(201)
    const server = hetzner.servers.get(Number(created.body.lease.cloudID))!
    expect({ location: server.location, image: server.image }).toEqual({ location: 'nbg1', image: 'debian-12' })
    const bad = await createLease({ provider: 'hetzner', location: 'nbg1; rm -rf /' })
    expect(bad.status).toBe(400)
    expect(bad.body.message).toMatch(/location/)
  })

  it('refuses non-Linux targets with a clear message', async () => {
    const refused = await createLease({ provider: 'hetzner', target: 'windows' })
    expect(refused.status).toBe(400)
    expect(refused.body.message).toMatch(/not supported.*linux/i)
    expect(hetzner.count('POST', '/servers')).toBe(0)
  })
})

describe('brokered AWS leases', () => {
  it('launches spot in the first region with user data, tags and the class type', async () => {
    const created = await createLease({ provider: 'aws', class: 'standard' })
    expect(created.status).toBe(201)
    const [instance] = ec2.live()
    expect(instance).toMatchObject({ region: 'eu-west-1', type: 'c7a.8xlarge', market: 'spot', rootGB: '400' })
    expect(instance.tags).toMatchObject({ lease: created.body.lease.id, crabbox: 'true', owner: 'peter_example.com' })
    expect(instance.userData).toContain(publicKey)
    expect(created.body.lease).toMatchObject({
      provider: 'aws',
      host: instance.ip,
      region: 'eu-west-1',
      market: 'spot',
      serverType: 'c7a.8xlarge',
      cloudID: instance.id,
    })
  })

  it('falls back from spot to on-demand when spot is over quota everywhere', async () => {
    ec2.setOverQuota(['spot'])
    const created = await createLease({ provider: 'aws', class: 'standard' })
    expect(created.status).toBe(201)
    expect(created.body.lease).toMatchObject({ market: 'on-demand', region: 'eu-west-1', serverType: 'c7a.8xlarge' })
    expect(ec2.live()).toHaveLength(1)
  })

  it('tries the capacity regions in order when a region has no capacity for any candidate type', async () => {
    ec2.setNoCapacity(['eu-west-1'])
    const created = await createLease({ provider: 'aws', class: 'standard', capacity: { market: 'on-demand' } })
    expect(created.status).toBe(201)
    expect(created.body.lease).toMatchObject({ region: 'eu-west-2', market: 'on-demand', serverType: 'c7a.8xlarge' })
    // The key pair imported into the region that failed is removed again.
    expect([...ec2.keyPairs.keys()]).toEqual([`eu-west-2/crabbox-${created.body.lease.id.replace('_', '-')}`])
  })

  it('release terminates the instance and deletes its key pair; a vanished instance counts as deleted', async () => {
    const lease = (await createLease({ provider: 'aws', class: 'standard' })).body.lease
    ec2.instances.delete(lease.cloudID)
    expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`, { delete: true })).status).toBe(200)
    expect((await api(peter, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('released')
    expect(await inFleet((deps: FleetDeps) => cleanupState(deps.storage, lease.id)?.pending)).toBe(false)
    const other = (await createLease({ provider: 'aws', class: 'standard' })).body.lease
    expect((await api(peter, 'POST', `/v1/leases/${other.id}/release`, { delete: true })).status).toBe(200)
    expect(ec2.live()).toHaveLength(0)
    expect(ec2.keyPairs.size).toBe(0)
    expect(ec2.calls.filter((c) => c.action === 'TerminateInstances' && c.params['InstanceId.1'] === other.cloudID)).toHaveLength(1)
  })

  it('release terminates by instance ID even while a tag search does not show the instance yet', async () => {
    const lease = (await createLease({ provider: 'aws', class: 'standard' })).body.lease
    // DescribeInstances is eventually consistent: right after a launch a tag filter can miss it.
    ec2.instances.get(lease.cloudID)!.tags = {}
    expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`, { delete: true })).status).toBe(200)
    expect(ec2.instances.get(lease.cloudID)!.state).toBe('terminated')
  })

  it('a RunInstances reply lost on the wire is retried with the same ClientToken: one instance', async () => {
    ec2.inject({ action: 'RunInstances', kind: 'lost' })
    const created = await createLease({ provider: 'aws', class: 'standard' })
    expect(created.status).toBe(201)
    expect(ec2.count('RunInstances')).toBe(2)
    expect(ec2.live()).toHaveLength(1)
    expect(created.body.lease.cloudID).toBe(ec2.live()[0].id)
  })

  it('takes AMI, security group, subnet, root volume and the on-demand fallback from the lease request', async () => {
    const group = ec2.seedSecurityGroup('eu-west-1', 'team-runners')
    const created = await createLease({
      provider: 'aws',
      class: 'standard',
      awsAMI: 'ami-0123456789abcdef0',
      awsSGID: group,
      awsSubnetID: 'subnet-0123456789abcdef0',
      awsRootGB: 120,
    })
    expect(created.status).toBe(201)
    expect(ec2.live()[0]).toMatchObject({
      imageId: 'ami-0123456789abcdef0',
      groupIds: [group],
      subnetId: 'subnet-0123456789abcdef0',
      rootGB: '120',
    })
    // No on-demand pass when the request's fallback policy says so.
    ec2.setOverQuota(['spot'])
    const spotOnly = await createLease({ provider: 'aws', class: 'standard', capacity: { fallback: 'none' } })
    expect(spotOnly.status).toBe(503)
    expect(spotOnly.body.error).toBe('no_capacity')
    const launches = ec2.calls.filter((c) => c.action === 'RunInstances').slice(1)
    expect(launches.length).toBeGreaterThan(0)
    expect(launches.every((c) => c.params['InstanceMarketOptions.MarketType'] === 'spot')).toBe(true)
    for (const [field, value] of [
      ['awsAMI', 'ami-nope'],
      ['awsSGID', 'default'],
      ['awsRootGB', 0],
    ] as const) {
      const bad = await createLease({ provider: 'aws', [field]: value })
      expect({ field, status: bad.status }).toEqual({ field, status: 400 })
      expect(bad.body.message).toContain(field)
    }
    const lonelySubnet = await createLease({ provider: 'aws', awsSubnetID: 'subnet-0123456789abcdef0' })
    expect(lonelySubnet.status).toBe(400)
    expect(lonelySubnet.body.message).toMatch(/awsSGID/)
  })

  it('refuses macOS targets without a dedicated host (test/worker/macos-broker.test.ts; Windows: windows-broker.test.ts)', async () => {
    for (const target of ['macos']) {
      const refused = await createLease({ provider: 'aws', target })
      expect(refused.status).toBe(400)
      expect(refused.body.message).toMatch(/target macos needs awsMacHostID/)
    }
    expect(ec2.count('RunInstances')).toBe(0)
  })
})
