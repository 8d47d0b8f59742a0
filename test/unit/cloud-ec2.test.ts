import { afterEach, describe, expect, it } from 'vitest'
import { createFakeEc2, serveFake } from '../support/fake-ec2.js'
import type { ServedFake } from '../support/fake-hetzner.js'
import {
  awsSpotHourlyUSD,
  createAwsMachine,
  createEc2Api,
  deleteAwsMachine,
  parseXml,
  touchAwsMachine,
  xmlItems,
  xmlText,
} from '../../src/cloud/ec2-api.js'
import { CloudApiError, machineLabels, providerKeyName } from '../../src/cloud/cloud-machines.js'

const leaseId = 'cbx_00000000abcd'
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVuaXQtdGVzdC1rZXktbWF0ZXJpYWwtMDAwMDAwMDAw crabbox cbx_00000000abcd'
const fast = { pollIntervalMs: 1, sleep: async () => {} }

function input(overrides: Partial<Parameters<typeof createAwsMachine>[1]> = {}) {
  return {
    leaseId,
    name: 'crabbox-swift-krill-0a1b2c3d',
    labels: machineLabels({
      provider: 'aws',
      leaseId,
      slug: 'swift-krill',
      owner: 'ci',
      org: 'openclaw',
      profile: 'default',
      class: 'standard',
      serverType: 'c7a.8xlarge',
      target: 'linux',
      keep: false,
      providerKey: providerKeyName(leaseId),
      ttlSeconds: 3600,
      idleTimeoutSeconds: 1800,
      createdAt: new Date(),
    }),
    instanceTypes: ['c7a.8xlarge', 'c7i.8xlarge'],
    regions: ['eu-west-1', 'eu-west-2'],
    markets: ['spot', 'on-demand'] as Array<'spot' | 'on-demand'>,
    rootGB: 100,
    sshPorts: ['2222', '22'],
    sshCIDRs: ['198.51.100.0/24'],
    userData: '#cloud-config\n',
    sshPublicKey: publicKey,
    keyName: providerKeyName(leaseId),
    ...overrides,
  }
}

describe('EC2 XML', () => {
  it('parses documented reply shapes, entities and errors', () => {
    const root = parseXml(
      '<?xml version="1.0"?><DescribeInstancesResponse xmlns="x"><reservationSet><item><instancesSet><item><instanceId>i-1</instanceId><tagSet><item><key>owner</key><value>a &amp; b</value></item></tagSet></item></instancesSet></item></reservationSet></DescribeInstancesResponse>',
    )
    const item = xmlItems(xmlItems(root, 'reservationSet')[0], 'instancesSet')[0]
    expect(xmlText(item, 'instanceId')).toBe('i-1')
    expect(xmlText(xmlItems(item, 'tagSet')[0], 'value')).toBe('a & b')
  })
})

describe('EC2 client over real HTTP on loopback, SigV4-signed', () => {
  let served: ServedFake | undefined
  afterEach(async () => {
    await served?.close()
    served = undefined
  })

  it('launches spot in the first region, tags it, prices it and terminates it with its key', async () => {
    const fake = createFakeEc2()
    served = await serveFake(fake.handler)
    const api = createEc2Api({ accessKeyId: fake.accessKeyId, secretAccessKey: fake.secretAccessKey, endpoint: served.url, ...fast })
    const { machine } = await createAwsMachine(api, input())
    expect(machine).toMatchObject({ region: 'eu-west-1', serverType: 'c7a.8xlarge', market: 'spot', status: 'running' })
    const launched = fake.instances.get(machine.id)!
    expect(launched.tags).toMatchObject({ lease: leaseId, crabbox: 'true', keep: 'false', Name: 'crabbox-swift-krill-0a1b2c3d' })
    expect(launched.rootGB).toBe('100')
    expect([...fake.groups.values()][0].permissions).toEqual(['2222:198.51.100.0/24', '22:198.51.100.0/24'])
    expect(await awsSpotHourlyUSD(api, 'eu-west-1', 'c7a.8xlarge')).toBeCloseTo(0.61 * 1.1, 5)
    const created = Number(launched.tags.created_at)
    await touchAwsMachine(api, 'eu-west-1', machine.id, new Date((created + 600) * 1000))
    expect(launched.tags).toMatchObject({ last_touched_at: String(created + 600), expires_at: String(created + 600 + 1800) })
    await deleteAwsMachine(api, { id: machine.id, region: machine.region, regions: ['eu-west-1', 'eu-west-2'], leaseId })
    expect(fake.live()).toHaveLength(0)
    expect(fake.keyPairs.size).toBe(0)
  })

  it('bad credentials are an auth error', async () => {
    const fake = createFakeEc2()
    served = await serveFake(fake.handler)
    const api = createEc2Api({ accessKeyId: 'AKIDWRONG', secretAccessKey: 'x', endpoint: served.url, ...fast })
    const error = await createAwsMachine(api, input()).catch((e: unknown) => e)
    expect((error as CloudApiError).category).toBe('auth')
    const wrongSecret = createEc2Api({ accessKeyId: fake.accessKeyId, secretAccessKey: 'not-the-secret', endpoint: served.url, ...fast })
    const signature = await createAwsMachine(wrongSecret, input()).catch((e: unknown) => e)
    expect(signature).toMatchObject({ category: 'auth', code: 'SignatureDoesNotMatch' })
    expect(fake.count('RunInstances')).toBe(0)
  })

  it('retries throttling and server errors, and a lost RunInstances reply yields one instance', async () => {
    const fake = createFakeEc2()
    served = await serveFake(fake.handler)
    fake.inject({ action: 'DescribeInstances', kind: 'error', status: 503, code: 'RequestLimitExceeded', times: 2 })
    fake.inject({ action: 'RunInstances', kind: 'lost' })
    fake.inject({ action: 'TerminateInstances', kind: 'error', status: 500, code: 'InternalError', times: 2 })
    const api = createEc2Api({ accessKeyId: fake.accessKeyId, secretAccessKey: fake.secretAccessKey, endpoint: served.url, ...fast })
    const { machine } = await createAwsMachine(api, input())
    expect(fake.live()).toHaveLength(1)
    await deleteAwsMachine(api, { id: machine.id, region: machine.region, regions: ['eu-west-1'], leaseId })
    expect(fake.live()).toHaveLength(0)
    expect(fake.count('TerminateInstances')).toBe(3)
  })
})
