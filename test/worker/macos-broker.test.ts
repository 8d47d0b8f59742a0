import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { MACOS_DEFAULTS, renderMacUserData } from '../../src/cloud/macos-bootstrap.js'
import { createFakeEc2, type FakeEc2 } from '../support/fake-ec2.js'
import { createFakeHetzner } from '../support/fake-hetzner.js'
import { api, leaseId, shared } from './broker-support.js'
import { restoreProviders, useCloudFakes } from './cloud-support.js'

/**
 * Brokered macOS leases on AWS: the broker launches `mac2.metal` (or the type
 * asked) on the dedicated host the request names, on-demand, with the macOS
 * user data (work root and crabbox-ready; Screen Sharing with a desktop), and
 * records `ec2-user`, port 22 and the Mac work root. Against the fake EC2 only.
 */

const peter = shared('peter@example.com')
const key = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${'M'.repeat(43)} crabbox macos test`
const host = 'h-0123456789abcdef0'
let ec2: FakeEc2

beforeEach(async () => {
  ec2 = createFakeEc2()
  // The operator's image is a Linux one: a macOS lease must not take it.
  await useCloudFakes({ hetzner: createFakeHetzner(), ec2 }, { CRABBOX_AWS_AMI: 'ami-0123456789abcdef0' })
})
afterEach(async () => {
  ec2.releaseHung()
  await restoreProviders()
})

const createLease = (body: Record<string, unknown>) =>
  api(peter, 'POST', '/v1/leases', { sshPublicKey: key, leaseID: leaseId(), provider: 'aws', class: 'standard', ...body })
const launches = () => ec2.calls.filter((c) => c.action === 'RunInstances').map((c) => c.params)

describe('brokered AWS macOS leases', () => {
  it('launch mac2.metal on the dedicated host, on-demand, with the macOS user data, and record ec2-user on 22', async () => {
    const created = await createLease({ target: 'macos', awsMacHostID: host })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const [instance] = ec2.live()
    expect(instance.userData).toBe(renderMacUserData({ ...MACOS_DEFAULTS }))
    expect(instance.userData).not.toContain('#cloud-config')
    expect(instance.tags).toMatchObject({ target: 'macos' })
    const [launch] = launches()
    expect(launch).toMatchObject({ InstanceType: 'mac2.metal', 'Placement.HostId': host, 'Placement.Tenancy': 'host' })
    expect(launch['InstanceMarketOptions.MarketType']).toBeUndefined()
    const images = ec2.calls.find((c) => c.action === 'DescribeImages')!
    expect(JSON.stringify(images.params)).toContain('amzn-ec2-macos-14.*-arm64')
    expect(launch.ImageId).not.toBe('ami-0123456789abcdef0')
    expect(created.body.lease).toMatchObject({
      target: 'macos',
      serverType: 'mac2.metal',
      sshUser: 'ec2-user',
      sshPort: '22',
      sshFallbackPorts: [],
      workRoot: '/Users/ec2-user/crabbox',
      host: instance.ip,
      desktop: false,
    })
    expect(created.body.lease.market ?? 'on-demand').toBe('on-demand')

    // Release terminates the instance; the dedicated host is the user's and is never touched.
    const released = await api(peter, 'POST', `/v1/leases/${created.body.lease.id}/release`, { delete: true })
    expect(released.status, JSON.stringify(released.body)).toBe(200)
    expect(ec2.live()).toEqual([])
    const actions = ec2.calls.map((c) => c.action)
    expect(actions).toContain('TerminateInstances')
    expect(actions.filter((action) => /Host/.test(action))).toEqual([])
  })

  it('a desktop turns Screen Sharing on; an explicit type and work root are honoured', async () => {
    const created = await createLease({
      target: 'mac',
      awsMacHostID: host,
      desktop: true,
      serverType: 'mac2-m2.metal',
      workRoot: '/Users/ec2-user/work',
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const [instance] = ec2.live()
    expect(instance.userData).toBe(renderMacUserData({ ...MACOS_DEFAULTS, workRoot: '/Users/ec2-user/work', desktop: true }))
    expect(instance.userData).toContain('com.apple.screensharing')
    expect(launches()[0]).toMatchObject({ InstanceType: 'mac2-m2.metal', 'Placement.HostId': host })
    expect(created.body.lease).toMatchObject({ target: 'macos', desktop: true, workRoot: '/Users/ec2-user/work', sshUser: 'ec2-user' })
  })

  it('refuses what a Mac lease cannot have, before anything is made', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ target: 'macos' }, /target macos needs awsMacHostID/],
      [{ target: 'macos', awsMacHostID: host, browser: true }, /^browser: .*macOS/],
      [{ target: 'macos', awsMacHostID: host, code: true }, /^code: .*macOS/],
      [{ target: 'macos', awsMacHostID: host, tailscale: true }, /^tailscale: .*macOS/],
      [{ target: 'macos', awsMacHostID: host, capacity: { market: 'spot' } }, /capacity\.market spot: .*on-demand only/],
      [{ target: 'macos', awsMacHostID: host, sshUser: 'crabbox' }, /^sshUser: .*ec2-user/],
      [{ target: 'macos', awsMacHostID: host, sshPort: '2222' }, /^sshPort: .*22/],
      [{ target: 'macos', awsMacHostID: host, sshFallbackPorts: ['2200'] }, /^sshFallbackPorts: /],
      [{ awsMacHostID: host }, /^awsMacHostID: .*target macos/],
      [{ target: 'windows', awsMacHostID: host }, /^awsMacHostID: /],
    ]
    for (const [body, message] of cases) {
      const refused = await createLease(body)
      expect(refused.status, JSON.stringify(body)).toBe(400)
      expect(refused.body.message, JSON.stringify(body)).toMatch(message)
    }
    expect(launches()).toEqual([])
    expect(ec2.live()).toEqual([])
  })

  it('other providers still refuse macOS, naming who can', async () => {
    for (const provider of ['hetzner', 'static']) {
      const refused = await createLease({ provider, target: 'macos', awsMacHostID: host })
      expect(refused.status, provider).toBe(400)
      expect(refused.body.message).toContain('providers that can run macos: ssh (an existing Mac), local (on a Mac), aws (mac2.metal')
    }
    expect(ec2.live()).toEqual([])
  })
})
