import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { createFakeHetzner, type FakeHetzner } from '../support/fake-hetzner.js'
import { createFakeEc2, type FakeEc2 } from '../support/fake-ec2.js'
import { api, inFleet, leaseId, restoreSettings, shared, withSettings } from './broker-support.js'
import { restoreProviders, useCloudFakes } from './cloud-support.js'

/**
 * Placement fields of a lease request: each one the chosen provider honours shows
 * in the lease record or in the request the cloud fake received; each one it
 * cannot honour is a 400 that names the field, and nothing is made or recorded.
 */

const who = shared('placement@example.com', 'placement')
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJyb2tlci10ZXN0LWtleS1tYXRlcmlhbC0wMDAwMDAw crabbox test'

let hetzner: FakeHetzner
let ec2: FakeEc2

const create = (body: Record<string, unknown>) => api(who, 'POST', '/v1/leases', { sshPublicKey: publicKey, leaseID: leaseId(), ...body })

/** Asserts a 400 naming `field`, and that no lease of this owner was left behind. */
async function expectRefused(body: Record<string, unknown>, field: string, error = 'invalid_request') {
  const before = await liveLeases()
  const result = await create(body)
  expect({ field, status: result.status, error: result.body?.error }).toEqual({ field, status: 400, error })
  expect(result.body.message).toContain(field)
  expect(await liveLeases()).toBe(before)
}

const liveLeases = () =>
  inFleet(
    (deps) =>
      deps.storage.one<{ n: number }>(
        "SELECT count(*) AS n FROM leases WHERE owner = ? AND state IN ('provisioning', 'active')",
        who.kind === 'shared' ? who.owner : '',
      )!.n,
  )

const cloudInit = (userData: string) =>
  parse(userData.replace(/^#cloud-config\n/, '')) as {
    users: unknown[]
    write_files: { path: string; content: string }[]
    runcmd: string[]
  }

beforeEach(async () => {
  hetzner = createFakeHetzner()
  ec2 = createFakeEc2()
  await useCloudFakes({ hetzner, ec2 })
})

afterEach(async () => {
  hetzner.releaseHung()
  ec2.releaseHung()
  await restoreProviders()
  await restoreSettings()
})

describe('lease asks every provider checks', () => {
  it('records profile, network and the canonical target of an alias', async () => {
    const created = await create({ provider: 'static', profile: 'ci-check', network: 'public', target: 'Ubuntu' })
    expect(created.status).toBe(201)
    expect(created.body.lease).toMatchObject({ profile: 'ci-check', network: 'public', target: 'linux' })
    const plain = await create({ provider: 'static', targetOS: 'linux' })
    expect(plain.body.lease).toMatchObject({ profile: 'default', target: 'linux' })
    expect(plain.body.lease).not.toHaveProperty('network')
  })

  it('installs a desktop, a browser and code-server on Hetzner and AWS, and records and labels them', async () => {
    const all = { desktop: true, browser: true, code: true }
    const onHetzner = await create({ provider: 'hetzner', ...all })
    expect(onHetzner.status).toBe(201)
    expect(onHetzner.body.lease).toMatchObject(all)
    const server = hetzner.servers.get(Number(onHetzner.body.lease.cloudID))!
    const onAws = await create({ provider: 'aws', ...all })
    expect(onAws.status).toBe(201)
    expect(onAws.body.lease).toMatchObject(all)
    for (const userData of [server.user_data, ec2.live()[0].userData]) {
      const init = cloudInit(userData)
      const units = init.write_files.map((f) => f.path)
      for (const unit of ['crabbox-xvfb', 'crabbox-desktop', 'crabbox-x11vnc', 'crabbox-code-server'])
        expect(units).toContain(`/etc/systemd/system/${unit}.service`)
      const commands = JSON.stringify(init.runcmd)
      expect(commands).toContain('x11vnc')
      expect(commands).toContain('chromium')
      expect(commands).toContain('code-server')
      // The VNC password is made on the machine, never carried in the user data.
      expect(commands).toContain('/dev/urandom')
    }
    expect(server.labels).toMatchObject({ desktop: 'true', browser: 'true', code: 'true' })
    // Asking for none is what every lease gets, and nothing is installed.
    const none = await create({ provider: 'hetzner', desktop: false, browser: false, code: false })
    expect(none.body.lease).toMatchObject({ desktop: false, browser: false, code: false })
    const plain = cloudInit(hetzner.servers.get(Number(none.body.lease.cloudID))!.user_data)
    expect(JSON.stringify(plain)).not.toMatch(/x11vnc|chromium|code-server/)
  })

  it('refuses targets and Windows modes it cannot make, and Tailscale networking', async () => {
    await expectRefused({ provider: 'static', target: 'mac' }, 'target', 'unsupported_target')
    await expectRefused({ provider: 'hetzner', targetOS: 'win', windowsMode: 'wsl' }, 'target', 'unsupported_target')
    await expectRefused({ provider: 'static', windowsMode: 'wsl2' }, 'windowsMode')
    await expectRefused({ provider: 'static', windowsMode: 'dos' }, 'windowsMode')
    await expectRefused({ provider: 'static', network: 'tailscale' }, 'network')
    await expectRefused({ provider: 'static', network: 'carrier-pigeon' }, 'network')
    expect((await create({ provider: 'static', windowsMode: 'normal' })).status).toBe(201)
  })

  it('refuses capacity settings no provider acts on, and the instance profile', async () => {
    await expectRefused({ provider: 'aws', capacity: { availabilityZones: ['eu-west-1a'] } }, 'capacity.availabilityZones')
    await expectRefused({ provider: 'aws', capacity: { hints: true } }, 'capacity.hints')
    await expectRefused({ provider: 'aws', capacity: { strategy: 'cheapest' } }, 'capacity.strategy')
    await expectRefused({ provider: 'aws', awsProfile: 'admin-role' }, 'awsProfile')
    await expectRefused({ provider: 'aws', awsSSHCIDRs: ['0.0.0.0/0'] }, 'awsSSHCIDRs')
    await expectRefused({ provider: 'hetzner', serverTypeExplicit: true }, 'serverTypeExplicit')
    for (const [field, value] of [
      ['tailscaleTags', ['tag:ci']],
      ['tailscaleHostname', 'crabbox-{slug}'],
      ['tailscaleExitNode', 'exit.tailnet.ts.net'],
      ['tailscaleExitNodeAllowLanAccess', true],
      ['awsMacHostID', 'h-0123456789abcdef0'],
      ['azureLocation', 'eastus'],
      ['azureImage', 'Canonical:ubuntu:22_04-lts:latest'],
    ] as const)
      await expectRefused({ provider: 'aws', [field]: value }, field)
    expect(ec2.count('RunInstances')).toBe(0)
    const fine = await create({
      provider: 'aws',
      class: 'standard',
      capacity: { hints: false, availabilityZones: [], strategy: 'most-available' },
    })
    expect(fine.status).toBe(201)
  })
})

describe('static pool placement', () => {
  // Host names per test: claims live in the one Fleet object the tests share.
  const pool = (tag: string) =>
    JSON.stringify([
      { name: `${tag}-default`, host: '192.0.2.201', port: 22, user: 'crabbox', workRoot: '/work/crabbox' },
      { name: `${tag}-alice`, host: '192.0.2.202', port: 2200, user: 'alice', workRoot: '/srv/alice', fallbackPorts: [22] },
    ])

  it('picks the pool host that has the SSH user, ports and work root asked for', async () => {
    await withSettings({ CRABBOX_STATIC_POOL: pool('pick') })
    const created = await create({
      provider: 'static',
      sshUser: 'alice',
      sshPort: '2200',
      sshFallbackPorts: ['22'],
      workRoot: '/srv/alice',
    })
    expect(created.status).toBe(201)
    expect(created.body.lease).toMatchObject({
      cloudID: 'pick-alice',
      sshUser: 'alice',
      sshPort: '2200',
      sshFallbackPorts: ['22'],
      workRoot: '/srv/alice',
    })
    const byRoot = await create({ provider: 'static', workRoot: '/work/crabbox' })
    expect(byRoot.body.lease).toMatchObject({ cloudID: 'pick-default', workRoot: '/work/crabbox' })
  })

  it('answers 400 naming the field no pool host has, and 503 when the fitting hosts are taken', async () => {
    await withSettings({ CRABBOX_STATIC_POOL: pool('refuse') })
    await expectRefused({ provider: 'static', sshUser: 'bob' }, 'sshUser')
    await expectRefused({ provider: 'static', sshPort: '2022' }, 'sshPort')
    await expectRefused({ provider: 'static', sshUser: 'alice', workRoot: '/work/crabbox' }, 'workRoot')
    await expectRefused({ provider: 'static', sshFallbackPorts: ['2223'] }, 'sshFallbackPorts')
    expect((await create({ provider: 'static', sshUser: 'alice' })).status).toBe(201)
    const taken = await create({ provider: 'static', sshUser: 'alice' })
    expect(taken.status).toBe(503)
    expect(taken.body.error).toBe('no_capacity')
  })

  it('gives a desktop, a browser or code-server only on a pool host that declares it, else 400 naming it', async () => {
    await withSettings({ CRABBOX_STATIC_POOL: pool('plain') })
    for (const capability of ['desktop', 'browser', 'code']) await expectRefused({ provider: 'static', [capability]: true }, capability)
    await withSettings({
      CRABBOX_STATIC_POOL: JSON.stringify([
        { name: 'caps-plain', host: '192.0.2.211' },
        { name: 'caps-desktop', host: '192.0.2.212', desktop: true, browser: true },
      ]),
    })
    await expectRefused({ provider: 'static', desktop: true, code: true }, 'code')
    const created = await create({ provider: 'static', desktop: true, browser: true })
    expect(created.status).toBe(201)
    expect(created.body.lease).toMatchObject({ cloudID: 'caps-desktop', desktop: true, browser: true, code: false })
  })

  it('refuses cloud placement fields and server types, naming each', async () => {
    for (const [field, body] of [
      ['location', { location: 'nbg1' }],
      ['image', { image: 'debian-12' }],
      ['awsRegion', { awsRegion: 'eu-west-2' }],
      ['awsAMI', { awsAMI: 'ami-0123456789abcdef0' }],
      ['awsSGID', { awsSGID: 'sg-0123456789abcdef0' }],
      ['awsSubnetID', { awsSubnetID: 'subnet-0123456789abcdef0' }],
      ['awsRootGB', { awsRootGB: 100 }],
      ['capacity.market', { capacity: { market: 'on-demand' } }],
      ['capacity.fallback', { capacity: { fallback: 'none' } }],
      ['capacity.regions', { capacity: { regions: ['eu-west-1'] } }],
      ['serverType', { serverType: 'cpx62' }],
    ] as const)
      await expectRefused({ provider: 'static', ...body }, field)
  })
})

describe('Hetzner placement', () => {
  it('bootstraps the SSH user, ports and work root asked for, and records them', async () => {
    const created = await create({
      provider: 'hetzner',
      class: 'standard',
      sshUser: 'builder',
      sshPort: '2200',
      sshFallbackPorts: [],
      workRoot: '/srv/ci',
    })
    expect(created.status).toBe(201)
    const server = hetzner.servers.get(Number(created.body.lease.cloudID))!
    const init = cloudInit(server.user_data)
    expect(init.users[1]).toMatchObject({ name: 'builder', ssh_authorized_keys: [publicKey] })
    const sshd = init.write_files.find((f) => f.path === '/etc/ssh/sshd_config.d/99-crabbox.conf')!
    expect(sshd.content).toMatch(/^Port 2200$/m)
    expect(sshd.content).not.toMatch(/^Port 22$/m)
    expect(JSON.stringify(init.runcmd)).toContain("'/srv/ci'")
    expect(created.body.lease).toMatchObject({ sshUser: 'builder', sshPort: '2200', sshFallbackPorts: [], workRoot: '/srv/ci' })
  })

  it('takes the on-demand market, and with serverTypeExplicit false falls back to the class types', async () => {
    hetzner.setUnavailable(['cx53'])
    const fallback = await create({
      provider: 'hetzner',
      class: 'standard',
      serverType: 'cx53',
      serverTypeExplicit: false,
      capacity: { market: 'on-demand' },
    })
    expect(fallback.status).toBe(201)
    expect(fallback.body.lease.serverType).toBe('ccx33')
    const only = await create({ provider: 'hetzner', class: 'standard', serverType: 'cx53', serverTypeExplicit: true })
    expect(only.status).toBe(503)
  })

  it('refuses the spot market and AWS fields, naming each', async () => {
    await expectRefused({ provider: 'hetzner', capacity: { market: 'spot' } }, 'capacity.market')
    await expectRefused({ provider: 'hetzner', awsRegion: 'eu-west-1' }, 'awsRegion')
    await expectRefused({ provider: 'hetzner', awsAMI: 'ami-0123456789abcdef0' }, 'awsAMI')
    await expectRefused({ provider: 'hetzner', capacity: { fallback: 'on-demand-after-120s' } }, 'capacity.fallback')
    await expectRefused({ provider: 'hetzner', sshUser: 'Not A User' }, 'sshUser')
    await expectRefused({ provider: 'hetzner', workRoot: '/srv/../etc' }, 'workRoot')
    expect(hetzner.count('POST', '/servers')).toBe(0)
  })
})

describe('AWS placement', () => {
  it('launches in the region asked for, then the capacity regions in their order', async () => {
    const created = await create({ provider: 'aws', class: 'standard', awsRegion: 'us-east-1' })
    expect(created.status).toBe(201)
    expect(ec2.live()[0].region).toBe('us-east-1')
    expect(created.body.lease.region).toBe('us-east-1')
    ec2.setNoCapacity(['eu-west-2'])
    const ordered = await create({ provider: 'aws', class: 'standard', capacity: { regions: ['eu-west-2', 'eu-west-1'] } })
    expect(ordered.body.lease.region).toBe('eu-west-1')
  })

  it('refuses regions outside the broker list, Hetzner fields and ports its security group keeps closed', async () => {
    await expectRefused({ provider: 'aws', awsRegion: 'ap-south-1' }, 'awsRegion')
    await expectRefused({ provider: 'aws', capacity: { regions: ['eu-west-1', 'sa-east-1'] } }, 'capacity.regions')
    await expectRefused({ provider: 'aws', location: 'nbg1' }, 'location')
    await expectRefused({ provider: 'aws', image: 'ubuntu-24.04' }, 'image')
    await expectRefused({ provider: 'aws', sshPort: '2200' }, 'sshPort')
    expect(ec2.count('RunInstances')).toBe(0)
  })

  it('bootstraps the SSH settings asked for, any port with a security group of the lease own', async () => {
    const group = ec2.seedSecurityGroup('eu-west-1', 'team-runners')
    const created = await create({
      provider: 'aws',
      class: 'standard',
      awsSGID: group,
      sshUser: 'builder',
      sshPort: '2200',
      workRoot: '/srv/ci',
    })
    expect(created.status).toBe(201)
    const init = cloudInit(ec2.live()[0].userData)
    expect(init.users[1]).toMatchObject({ name: 'builder' })
    expect(init.write_files.find((f) => f.path === '/etc/ssh/sshd_config.d/99-crabbox.conf')!.content).toMatch(/^Port 2200$/m)
    expect(created.body.lease).toMatchObject({ sshUser: 'builder', sshPort: '2200', workRoot: '/srv/ci', market: 'spot' })
  })
})
