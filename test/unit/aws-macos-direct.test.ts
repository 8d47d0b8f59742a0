import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { renderMacUserData } from '../../src/cloud/macos-bootstrap.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { CrabboxError } from '../../src/errors.js'
import { awsProvider } from '../../src/providers/aws.js'
import type { ProviderContext } from '../../src/providers/types.js'
import { createFakeEc2, serveFake } from '../support/fake-ec2.js'
import type { ServedFake } from '../support/fake-hetzner.js'

/**
 * `--provider aws --target macos` in direct mode, the provider against the fake EC2: the
 * launch on the dedicated host, how the lease is reached, refusals before any call, and
 * release (or a failure after the instance exists) terminating the instance, never the host.
 */

const leaseId = 'cbx_0000000000ac'
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVuaXQtdGVzdC1rZXktbm90LXJlYWwtMDAwMDAw crabbox'
const progress = new Proxy({}, { get: () => () => {} }) as ProviderContext['progress']
const request = {
  leaseId,
  keep: false,
  ttlSeconds: 3600,
  idleTimeoutSeconds: 1800,
  privateKeyPath: '/nonexistent/id_ed25519',
  publicKey,
  knownHostsPath: '/nonexistent/known_hosts',
}

describe('AWS macOS leases in direct mode (fake EC2)', () => {
  let served: ServedFake | undefined
  let fake: ReturnType<typeof createFakeEc2>
  beforeEach(async () => {
    fake = createFakeEc2()
    served = await serveFake(fake.handler)
    vi.stubEnv('AWS_ACCESS_KEY_ID', fake.accessKeyId)
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', fake.secretAccessKey)
    vi.stubEnv('CRABBOX_AWS_CONSOLE_WAIT_MS', '0')
  })
  afterEach(async () => {
    vi.unstubAllEnvs()
    await served?.close()
    served = undefined
  })

  const config = (change: (c: Config) => void = () => {}): ProviderContext => {
    const c = defaultConfig()
    c.provider = 'aws'
    c.target = 'macos'
    c.aws.endpoint = served!.url
    c.aws.macHostId = 'h-0123456789abcdef0'
    c.desktop = true
    change(c)
    return { config: c, progress }
  }
  const runParams = () => fake.calls.filter((c) => c.action === 'RunInstances').map((c) => c.params)

  it('launches mac2.metal on the dedicated host, on-demand, with the macOS user data; reached as ec2-user on 22', async () => {
    const lease = await awsProvider.acquire(request, config())
    expect(runParams()).toHaveLength(1)
    expect(runParams()[0]).toMatchObject({
      InstanceType: 'mac2.metal',
      'Placement.HostId': 'h-0123456789abcdef0',
      'Placement.Tenancy': 'host',
    })
    // The default market is spot; a Mac is on-demand whatever it says.
    expect(runParams()[0]['InstanceMarketOptions.MarketType']).toBeUndefined()
    const [instance] = fake.live()
    expect(instance.userData).toBe(renderMacUserData({ sshUser: 'ec2-user', workRoot: '/Users/ec2-user/crabbox', desktop: true }))
    expect(instance.tags).toMatchObject({ target: 'macos', lease: leaseId, desktop: 'true' })
    expect(lease.ssh).toMatchObject({ user: 'ec2-user', port: 22, fallbackPorts: [] })
    expect(lease.workRoot).toBe('/Users/ec2-user/crabbox')
    // Listed again (another command), the lease is still a Mac's.
    const [listed] = await awsProvider.list(config())
    expect(listed.ssh).toMatchObject({ user: 'ec2-user', port: 22 })
    expect(listed.workRoot).toBe('/Users/ec2-user/crabbox')
    // Release terminates the instance; the dedicated host is never touched.
    await awsProvider.release(lease, config())
    expect(fake.live()).toEqual([])
    expect(fake.calls.some((c) => /Host/.test(c.action))).toBe(false)
  })

  it('refuses a Mac without a host, or with what crabbox does not set up there, before any EC2 call', async () => {
    const refusals: Array<[(c: Config) => void, RegExp]> = [
      [(c) => (c.aws.macHostId = undefined), /dedicated host: set aws\.macHostId \(CRABBOX_AWS_MAC_HOST_ID\)/],
      [(c) => (c.browser = true), /no --browser on macOS runners/],
      [(c) => (c.code = true), /no --code on macOS runners/],
    ]
    for (const [change, message] of refusals) {
      const error = await awsProvider.acquire(request, config(change)).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(CrabboxError)
      expect((error as CrabboxError).exitCode).toBe(2)
      expect((error as CrabboxError).message).toMatch(message)
    }
    expect(fake.calls).toEqual([])
  })

  it('a failure after the instance exists terminates it', async () => {
    // The instance is launched, then EC2 refuses every look at it: the create gives up and cleans up.
    fake.inject({
      action: 'DescribeInstances',
      kind: 'error',
      status: 400,
      code: 'UnauthorizedOperation',
      times: 1000,
      when: (p) => 'InstanceId.1' in p,
    })
    const error = await awsProvider.acquire(request, config()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CrabboxError)
    expect(runParams()).toHaveLength(1)
    expect(fake.live()).toEqual([])
  })
})
