import { afterEach, describe, expect, it } from 'vitest'
import { createFakeAzure, serveFake, type ServedFake } from '../support/fake-azure.js'
import { createAzureApi } from '../../src/cloud/azure-api.js'
import {
  createAzureMachine,
  deleteAzureMachine,
  ensureAzureNetwork,
  findAzureMachine,
  listAzureMachines,
  nsgRules,
  supportsEphemeralOsDisk,
  touchAzureMachine,
  type AzureCreateInput,
} from '../../src/cloud/azure-machines.js'
import { candidateTypes } from '../../src/cloud/classes.js'
import { CloudApiError, machineLabels, providerKeyName } from '../../src/cloud/cloud-machines.js'
import { azureCredentials } from '../../src/providers/cloud/credentials.js'
import { azureMarkets } from '../../src/providers/azure.js'
import { loadConfig } from '../../src/config/load.js'
import { checkDirectAsk, leaseAsk } from '../../src/services/lease-request.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVuaXQtdGVzdC1rZXktbWF0ZXJpYWwtMDAwMDAwMDAw crabbox cbx_0123456789ab'
const leaseId = 'cbx_0123456789ab'
const fast = { pollIntervalMs: 1, sleep: async () => {} }
const VM = 'Microsoft.Compute/virtualMachines'
const NIC = 'Microsoft.Network/networkInterfaces'
const PIP = 'Microsoft.Network/publicIPAddresses'
const DISK = 'Microsoft.Compute/disks'

const network = {
  location: 'eastus',
  resourceGroup: 'crabbox-leases',
  vnet: 'crabbox-vnet',
  subnet: 'crabbox-subnet',
  nsg: 'crabbox-nsg',
  sshPorts: ['2222', '22'],
  sshCIDRs: ['198.51.100.0/24'],
}

function input(overrides: Partial<AzureCreateInput> = {}): AzureCreateInput {
  return {
    leaseId,
    name: 'crabbox-blue-crab-1234abcd',
    labels: machineLabels({
      provider: 'azure',
      leaseId,
      slug: 'blue-crab',
      owner: 'peter@example.com',
      org: 'openclaw',
      profile: 'default',
      class: 'standard',
      serverType: 'Standard_D32ads_v6',
      target: 'linux',
      keep: false,
      providerKey: providerKeyName(leaseId),
      ttlSeconds: 5400,
      idleTimeoutSeconds: 1800,
      createdAt: new Date('2026-01-01T00:00:00Z'),
    }),
    sizes: ['Standard_D32ads_v6', 'Standard_D32ds_v6', 'Standard_F32s_v2'],
    markets: ['spot', 'on-demand'],
    image: 'Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest',
    sshUser: 'crabbox',
    sshPublicKey: publicKey,
    userData: '#cloud-config\n# ünïcode\n',
    network,
    ...overrides,
  }
}

function setup(fake: ReturnType<typeof createFakeAzure>, url: string) {
  return createAzureApi({
    tenantId: fake.tenantId,
    clientId: fake.clientId,
    clientSecret: fake.clientSecret,
    subscriptionId: fake.subscriptionId,
    endpoint: url,
    loginEndpoint: url,
    ...fast,
  })
}

describe('Azure ARM client over real HTTP on loopback', () => {
  let served: ServedFake | undefined
  afterEach(async () => {
    await served?.close()
    served = undefined
  })

  it('creates the network and a spot VM with an ephemeral disk, lists it by tag, touches and deletes it all', async () => {
    let customData = ''
    const fake = createFakeAzure({ onCreate: (vm) => void (customData = vm.customData) })
    served = await serveFake(fake.handler)
    const api = setup(fake, served.url)
    const created = await createAzureMachine(api, input())
    expect(created.adopted).toBe(false)
    expect(created.machine).toMatchObject({
      provider: 'azure',
      name: 'crabbox-blue-crab-1234abcd',
      serverType: 'Standard_D32ads_v6',
      market: 'spot',
      status: 'running',
    })
    expect(created.machine.host).toMatch(/^203\.0\.113\./)
    expect(customData).toBe('#cloud-config\n# ünïcode\n')
    const put = fake.calls.find((c) => c.method === 'PUT' && c.path.endsWith('/virtualMachines/crabbox-blue-crab-1234abcd'))!
    expect(put.body).toMatchObject({
      tags: { crabbox: 'true', lease: leaseId, server_type: 'Standard_D32ads_v6', market: 'spot' },
      properties: {
        priority: 'Spot',
        evictionPolicy: 'Delete',
        storageProfile: {
          imageReference: { publisher: 'Canonical', offer: '0001-com-ubuntu-server-jammy', sku: '22_04-lts-gen2', version: 'latest' },
          osDisk: { diffDiskSettings: { option: 'Local', placement: 'ResourceDisk' } },
        },
        osProfile: { adminUsername: 'crabbox', linuxConfiguration: { disablePasswordAuthentication: true } },
      },
    })
    for (const path of [
      '',
      '/providers/Microsoft.Network/virtualNetworks/crabbox-vnet',
      '/providers/Microsoft.Network/networkSecurityGroups/crabbox-nsg',
    ])
      expect(fake.resource(`${fake.groupPath('crabbox-leases')}${path}`)?.tags).toEqual({ managed_by: 'crabbox' })
    const rules = fake.resource(`${fake.groupPath('crabbox-leases')}/providers/Microsoft.Network/networkSecurityGroups/crabbox-nsg`)!
      .properties.securityRules as Array<{ name: string; properties: { destinationPortRange: string; sourceAddressPrefix: string } }>
    expect(rules.map((r) => [r.name, r.properties.destinationPortRange, r.properties.sourceAddressPrefix])).toEqual([
      ['crabbox-ssh-2222-0', '2222', '198.51.100.0/24'],
      ['crabbox-ssh-22-0', '22', '198.51.100.0/24'],
    ])
    // One token for the whole create: it is cached until near expiry.
    expect(fake.tokenRequests).toBe(1)

    expect((await listAzureMachines(api, 'crabbox-leases')).map((m) => [m.name, m.host])).toEqual([
      [created.machine.name, created.machine.host],
    ])
    expect((await findAzureMachine(api, 'crabbox-leases', leaseId))?.id).toBe(created.machine.name)
    await touchAzureMachine(api, 'crabbox-leases', created.machine.name, new Date('2026-01-01T00:10:00Z'))
    expect(fake.ofType(VM)[0].tags?.last_touched_at).toBe(String(Date.parse('2026-01-01T00:10:00Z') / 1000))

    const again = await createAzureMachine(api, input())
    expect(again.adopted).toBe(true)

    await deleteAzureMachine(api, { group: 'crabbox-leases', leaseId, name: created.machine.name, delayMs: 1 })
    for (const type of [VM, NIC, PIP, DISK]) expect(fake.ofType(type), type).toHaveLength(0)
    expect(fake.ofType('Microsoft.Network/networkSecurityGroups')).toHaveLength(1)
  })

  it('falls back across sizes and markets on SkuNotAvailable, AllocationFailed and QuotaExceeded, deleting each failed VM', async () => {
    const fake = createFakeAzure({
      unavailableSizes: ['Standard_D32ads_v6'],
      allocationFailSizes: ['Standard_D32ds_v6'],
      quotaSizes: ['Standard_F32s_v2'],
    })
    served = await serveFake(fake.handler)
    const api = setup(fake, served.url)
    const error = await createAzureMachine(api, input()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CloudApiError)
    expect((error as CloudApiError).category).toBe('capacity')
    expect((error as CloudApiError).message).toMatch(/Standard_D32ads_v6 spot: .*SkuNotAvailable.*request/)
    expect((error as CloudApiError).message).toMatch(/AllocationFailed/)
    expect((error as CloudApiError).message).toMatch(/QuotaExceeded/)
    // Spot then on-demand, every size; nothing of the lease is left behind.
    expect(
      fake.calls
        .filter((c) => c.method === 'PUT' && c.path.includes('/virtualMachines/'))
        .map((c) => (c.body as { properties: { priority: string } }).properties.priority),
    ).toEqual(['Spot', 'Spot', 'Spot', 'Regular', 'Regular', 'Regular'])
    for (const type of [VM, NIC, PIP, DISK]) expect(fake.ofType(type), type).toHaveLength(0)

    const fake2 = createFakeAzure({ unavailableSizes: ['Standard_D32ads_v6'], noEphemeralSizes: ['Standard_D32ds_v6'] })
    await served.close()
    served = await serveFake(fake2.handler)
    const { machine, attempts } = await createAzureMachine(setup(fake2, served.url), input({ markets: ['on-demand'] }))
    expect(machine).toMatchObject({ serverType: 'Standard_D32ds_v6', market: 'on-demand' })
    expect(attempts.map((a) => a.serverType)).toEqual(['Standard_D32ads_v6'])
    const disk = fake2.ofType(VM)[0].properties.storageProfile as { osDisk: Record<string, unknown> }
    expect(disk.osDisk.diffDiskSettings).toBeUndefined()
    expect(disk.osDisk.managedDisk).toEqual({ storageAccountType: 'StandardSSD_LRS' })
  })

  it('deletes the VM, NIC and IP when the create fails after the VM exists', async () => {
    const fake = createFakeAzure()
    served = await serveFake(fake.handler)
    // The VM is made, then reading it back fails: everything made for the lease must go.
    fake.inject({
      kind: 'error',
      method: 'GET',
      path: /virtualmachines\/crabbox-blue-crab-1234abcd$/,
      status: 500,
      code: 'InternalServerError',
      times: 1,
    })
    const api = setup(fake, served.url)
    const error = await createAzureMachine(api, input()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CloudApiError)
    expect(fake.calls.some((c) => c.method === 'PUT' && c.path.includes('/virtualMachines/'))).toBe(true)
    for (const type of [VM, NIC, PIP, DISK]) expect(fake.ofType(type), type).toHaveLength(0)
  })

  it('retries a delete through NicInUse and PublicIPAddressInUse until ARM confirms', async () => {
    const fake = createFakeAzure()
    served = await serveFake(fake.handler)
    const api = setup(fake, served.url)
    const { machine } = await createAzureMachine(api, input())
    fake.inject({ kind: 'error', method: 'DELETE', path: /networkinterfaces\//, status: 400, code: 'NicInUse', times: 2 })
    fake.inject({
      kind: 'error',
      method: 'DELETE',
      path: /publicipaddresses\//,
      status: 400,
      code: 'InUsePublicIpAddressCannotBeDeleted',
      times: 1,
    })
    await deleteAzureMachine(api, { group: 'crabbox-leases', leaseId, name: machine.name, delayMs: 1 })
    for (const type of [VM, NIC, PIP, DISK]) expect(fake.ofType(type), type).toHaveLength(0)
    expect(fake.calls.filter((c) => c.method === 'DELETE' && c.path.includes('/networkInterfaces/'))).toHaveLength(3)

    const { machine: second } = await createAzureMachine(api, input())
    fake.inject({ kind: 'error', method: 'DELETE', path: /networkinterfaces\//, status: 400, code: 'NicInUse', times: 5 })
    const error = await deleteAzureMachine(api, { group: 'crabbox-leases', leaseId, name: second.name, attempts: 3, delayMs: 1 }).catch(
      (e: unknown) => e,
    )
    expect((error as CloudApiError).code).toBe('NicInUse')
    expect((error as CloudApiError).message).toMatch(/request [0-9a-f-]{36}/)
    // The stuck NIC (and the IP it holds) stay; the VM and the disk were still deleted.
    expect(fake.ofType(VM)).toHaveLength(0)
    expect(fake.ofType(DISK)).toHaveLength(0)
    expect(fake.ofType(NIC)).toHaveLength(1)
    expect(fake.ofType(PIP)).toHaveLength(1)
  })

  it('never changes a resource group, VNet or NSG crabbox did not create, and keeps others’ NSG rules', async () => {
    const fake = createFakeAzure()
    served = await serveFake(fake.handler)
    const api = setup(fake, served.url)
    fake.seed(fake.groupPath('team-rg'), { location: 'eastus', tags: { owner: 'team' }, properties: {} })
    const error = await ensureAzureNetwork(api, { ...network, resourceGroup: 'team-rg' }).catch((e: unknown) => e)
    expect((error as CloudApiError).message).toMatch(/resource group team-rg .*not tagged managed_by=crabbox/)
    expect(fake.calls.filter((c) => c.method !== 'GET')).toHaveLength(0)

    const others = [{ name: 'allow-https', properties: { priority: 100, destinationPortRange: '443', sourceAddressPrefix: '*' } }]
    const rules = nsgRules(
      [...others, { name: 'crabbox-ssh-2022-0', properties: { priority: 101 } }],
      ['2222', '22'],
      ['10.0.0.0/8', '192.0.2.0/24'],
    )
    expect(rules.map((r) => [r.name, (r.properties as { priority: number }).priority])).toEqual([
      ['allow-https', 100],
      ['crabbox-ssh-2222-0', 101],
      ['crabbox-ssh-2222-1', 102],
      ['crabbox-ssh-22-0', 103],
      ['crabbox-ssh-22-1', 104],
    ])
  })

  it('asks for a new token once the cached one is within five minutes of expiry', async () => {
    const fake = createFakeAzure({ tokenLifetime: 299 })
    served = await serveFake(fake.handler)
    const api = setup(fake, served.url)
    await listAzureMachines(api, 'crabbox-leases')
    await listAzureMachines(api, 'crabbox-leases')
    expect(fake.tokenRequests).toBe(2)
  })

  it('reports a bad secret as an auth error with the provider message, and lists nothing when the group is missing', async () => {
    const fake = createFakeAzure()
    served = await serveFake(fake.handler)
    const bad = createAzureApi({ ...fake, clientSecret: 'wrong', endpoint: served.url, loginEndpoint: served.url, ...fast })
    const error = await listAzureMachines(bad, 'crabbox-leases').catch((e: unknown) => e)
    expect((error as CloudApiError).category).toBe('auth')
    expect((error as CloudApiError).message).toMatch(/AADSTS7000215/)
    expect(await listAzureMachines(setup(fake, served.url), 'crabbox-leases')).toEqual([])
  })
})

describe('Azure settings and tables', () => {
  it('names the first missing service-principal variable', () => {
    const config = { azure: { tenantId: 't', clientId: 'c', subscriptionId: 's' } }
    expect(() => azureCredentials(config, {})).toThrow(/AZURE_CLIENT_SECRET/)
    expect(() => azureCredentials({ azure: {} }, { AZURE_CLIENT_SECRET: 'x' })).toThrow(/AZURE_TENANT_ID/)
    expect(azureCredentials(config, { AZURE_CLIENT_SECRET: ' x ' })).toEqual({
      tenantId: 't',
      clientId: 'c',
      clientSecret: 'x',
      subscriptionId: 's',
    })
  })

  it('maps classes to Standard_ sizes and knows which hold an ephemeral OS disk', () => {
    expect(candidateTypes('azure', 'standard')[0]).toBe('Standard_D32ads_v6')
    expect(candidateTypes('azure', 'beast')).toHaveLength(9)
    expect(candidateTypes('azure', 'Standard_B2s')).toEqual(['Standard_B2s'])
    expect(supportsEphemeralOsDisk('Standard_D32ads_v6')).toBe(true)
    expect(supportsEphemeralOsDisk('Standard_F32s_v2')).toBe(true)
    expect(supportsEphemeralOsDisk('Standard_D32as_v6')).toBe(false)
    expect(supportsEphemeralOsDisk('Standard_B2s')).toBe(false)
    expect(azureMarkets('spot', 'on-demand-after-120s')).toEqual(['spot', 'on-demand'])
    expect(azureMarkets('spot', 'none')).toEqual(['spot'])
    expect(azureMarkets('on-demand', 'on-demand-after-120s')).toEqual(['on-demand'])
  })
})

describe('Azure settings from the environment', () => {
  it('reads azure.* from CRABBOX_AZURE_* and AZURE_*, and sends only the set location/image to a broker', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-azure-config-'))
    try {
      const env = {
        HOME: dir,
        XDG_CONFIG_HOME: join(dir, 'config'),
        AZURE_TENANT_ID: 'tenant-a',
        CRABBOX_AZURE_TENANT_ID: 'tenant-b',
        AZURE_SUBSCRIPTION_ID: 'sub-1',
        CRABBOX_AZURE_LOCATION: 'westeurope',
        CRABBOX_AZURE_SSH_CIDRS: '198.51.100.0/24, 203.0.113.0/24',
      }
      const { config } = await loadConfig({ cwd: dir, env, warn: () => undefined })
      expect(config.azure).toMatchObject({
        tenantId: 'tenant-b',
        subscriptionId: 'sub-1',
        location: 'westeurope',
        resourceGroup: 'crabbox-leases',
        nsg: 'crabbox-nsg',
        sshCIDRs: ['198.51.100.0/24', '203.0.113.0/24'],
      })
      expect(leaseAsk(config, 'azure')).toMatchObject({ azureLocation: 'westeurope' })
      expect(leaseAsk(config, 'azure').azureImage).toBeUndefined()
      expect(leaseAsk(config, 'aws').azureLocation).toBeUndefined()
      // Azure machines get the same cloud-init capabilities; capacity.market and .fallback are its own.
      expect(() =>
        checkDirectAsk('azure', { ...config, desktop: true, sources: { ...config.sources, 'capacity.market': 'env' } }),
      ).not.toThrow()
      expect(() =>
        checkDirectAsk('azure', {
          ...config,
          sources: { ...config.sources, 'capacity.regions': 'env' },
          capacity: { ...config.capacity, regions: ['x'] },
        }),
      ).toThrow(/capacity\.regions/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
