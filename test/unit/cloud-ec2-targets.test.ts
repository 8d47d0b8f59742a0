import { afterEach, describe, expect, it } from 'vitest'
import { CloudApiError, machineLabels, providerKeyName } from '../../src/cloud/cloud-machines.js'
import { createAwsMachine, createEc2Api, deleteAwsMachine } from '../../src/cloud/ec2-api.js'
import { renderMacUserData } from '../../src/cloud/macos-bootstrap.js'
import { renderEc2LaunchUserData } from '../../src/cloud/windows-bootstrap.js'
import { createFakeEc2, serveFake } from '../support/fake-ec2.js'
import type { ServedFake } from '../support/fake-hetzner.js'

const leaseId = 'cbx_00000000beef'
const rsaKey = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7dW5pdC10ZXN0 crabbox cbx_00000000beef'
const fast = { pollIntervalMs: 1, sleep: async () => {} }

function input(target: 'windows' | 'macos', overrides: Partial<Parameters<typeof createAwsMachine>[1]> = {}) {
  return {
    leaseId,
    name: 'crabbox-calm-crab-00000000',
    labels: machineLabels({
      provider: 'aws',
      leaseId,
      slug: 'calm-crab',
      owner: 'ci',
      org: 'openclaw',
      profile: 'default',
      class: 'standard',
      serverType: target === 'macos' ? 'mac2.metal' : 'm7i.large',
      target,
      keep: false,
      providerKey: providerKeyName(leaseId),
      ttlSeconds: 3600,
      idleTimeoutSeconds: 1800,
      createdAt: new Date(),
    }),
    instanceTypes: [target === 'macos' ? 'mac2.metal' : 'm7i.large'],
    regions: ['eu-west-1'],
    markets: ['on-demand'] as Array<'spot' | 'on-demand'>,
    rootGB: 100,
    sshPorts: ['22'],
    sshCIDRs: ['198.51.100.0/24'],
    userData:
      target === 'macos'
        ? renderMacUserData({ sshUser: 'ec2-user', workRoot: '/Users/ec2-user/crabbox' })
        : renderEc2LaunchUserData(rsaKey),
    sshPublicKey: rsaKey,
    keyName: providerKeyName(leaseId),
    target,
    ...overrides,
  }
}

describe('AWS Windows and macOS launches against the fake EC2', () => {
  let served: ServedFake | undefined
  afterEach(async () => {
    await served?.close()
    served = undefined
  })

  const open = async () => {
    const fake = createFakeEc2()
    served = await serveFake(fake.handler)
    return {
      fake,
      api: createEc2Api({ accessKeyId: fake.accessKeyId, secretAccessKey: fake.secretAccessKey, endpoint: served.url, ...fast }),
    }
  }
  const runParams = (fake: ReturnType<typeof createFakeEc2>) => fake.calls.filter((c) => c.action === 'RunInstances').map((c) => c.params)

  it('Windows: the latest Windows Server 2022 image, EC2Launch user data, nested virtualization only for WSL2', async () => {
    const { fake, api } = await open()
    const { machine } = await createAwsMachine(api, input('windows', { windowsMode: 'wsl2' }))
    const images = fake.calls.filter((c) => c.action === 'DescribeImages').map((c) => c.params)
    expect(images[0]).toMatchObject({ 'Owner.1': 'amazon', 'Filter.1.Value.1': 'Windows_Server-2022-English-Full-Base-*' })
    const launched = fake.instances.get(machine.id)!
    expect(launched.imageId).toBe('ami-09aa11bb22cc33d0')
    expect(launched.userData.startsWith('version: 1.0\ntasks:\n')).toBe(true)
    expect(launched.tags).toMatchObject({ target: 'windows', lease: leaseId })
    expect(runParams(fake)[0]).toMatchObject({ 'CpuOptions.NestedVirtualization': 'enabled' })
    await deleteAwsMachine(api, { id: machine.id, region: machine.region, regions: ['eu-west-1'], leaseId })
    expect(fake.live()).toHaveLength(0)

    const normal = await open()
    await createAwsMachine(normal.api, input('windows', { windowsMode: 'normal' }))
    expect(runParams(normal.fake)[0]['CpuOptions.NestedVirtualization']).toBeUndefined()
  })

  it('macOS: the macOS 14 arm64 image on the dedicated host, on-demand only', async () => {
    const { fake, api } = await open()
    const { machine } = await createAwsMachine(api, input('macos', { macHostId: 'h-0123456789abcdef0' }))
    expect(fake.instances.get(machine.id)!.imageId).toBe('ami-09ee55ff66aa77b0')
    expect(runParams(fake)[0]).toMatchObject({
      'Placement.HostId': 'h-0123456789abcdef0',
      'Placement.Tenancy': 'host',
      InstanceType: 'mac2.metal',
    })
    expect(runParams(fake)[0]['InstanceMarketOptions.MarketType']).toBeUndefined()
  })

  it('macOS without a host or with spot is refused before anything is made', async () => {
    const { fake, api } = await open()
    const noHost = await createAwsMachine(api, input('macos')).catch((e: unknown) => e)
    expect(noHost).toBeInstanceOf(CloudApiError)
    expect((noHost as CloudApiError).message).toMatch(/aws\.macHostId \(CRABBOX_AWS_MAC_HOST_ID\)/)
    const spot = await createAwsMachine(api, input('macos', { macHostId: 'h-1', markets: ['spot', 'on-demand'] })).catch((e: unknown) => e)
    expect((spot as CloudApiError).message).toMatch(/on-demand only/)
    expect(fake.calls.filter((c) => c.action !== 'DescribeInstances')).toEqual([])
    expect(fake.keyPairs.size).toBe(0)
  })
})
