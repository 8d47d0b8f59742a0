import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Env } from '../../worker/env.js'
import type { FleetDeps } from '../../worker/fleet/deps.js'
import type { ProviderRegistry } from '../../worker/providers/registry.js'
import { createAzureBrokerProvider } from '../../worker/providers/azure.js'
import { asFetch } from '../support/fake-faults.js'
import { createFakeAzure } from '../support/fake-azure.js'
import { adminCaller, api, inFleet, leaseId, shared } from './broker-support.js'
import { fastCloud } from './cloud-support.js'

/**
 * The broker's real lease flow with the Azure provider talking to the fake ARM
 * API (called as `fetch` inside workerd): create, release, pool listing,
 * failure cleanup and missing secrets. Only the live Fleet object's provider
 * registry is swapped for the test.
 */

const peter = shared('peter@example.com')
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJyb2tlci10ZXN0LWtleS1tYXRlcmlhbC0wMDAwMDAw crabbox test'
const VM = 'Microsoft.Compute/virtualMachines'
const NIC = 'Microsoft.Network/networkInterfaces'
const PIP = 'Microsoft.Network/publicIPAddresses'
const DISK = 'Microsoft.Compute/disks'
let azure: ReturnType<typeof createFakeAzure>
let original: ProviderRegistry | undefined

async function useAzure(env: Record<string, string | undefined>, overrides: object = fastCloud): Promise<void> {
  await inFleet((deps: FleetDeps) => {
    original ??= deps.providers
    const provider = createAzureBrokerProvider(
      { storage: deps.storage, env: env as unknown as Env, fetch: asFetch(azure.handler) as typeof fetch },
      overrides,
    )
    const fallback = original
    deps.providers = { get: (name) => (name === 'azure' ? provider : fallback.get(name)), names: () => fallback.names() }
  })
}

const secrets = () => ({
  AZURE_TENANT_ID: azure.tenantId,
  AZURE_CLIENT_ID: azure.clientId,
  CRABBOX_AZURE_CLIENT_SECRET: azure.clientSecret,
  AZURE_SUBSCRIPTION_ID: azure.subscriptionId,
  CRABBOX_AZURE_ENDPOINT: 'https://management.azure.fake',
  CRABBOX_AZURE_LOGIN_ENDPOINT: 'https://login.azure.fake',
})

const createLease = (body: Record<string, unknown>) =>
  api(peter, 'POST', '/v1/leases', { sshPublicKey: publicKey, leaseID: leaseId(), provider: 'azure', ...body })
const leftovers = () => [VM, NIC, PIP, DISK].flatMap((type) => azure.ofType(type).map((r) => r.name))

beforeEach(async () => {
  azure = createFakeAzure()
  await useAzure(secrets())
})

afterEach(async () => {
  azure.releaseHung()
  await inFleet((deps: FleetDeps) => {
    if (original) deps.providers = original
  })
})

describe('brokered Azure leases', () => {
  it('a lease makes a spot VM in the asked location with the lease key, and release deletes every piece', async () => {
    const created = await createLease({
      class: 'standard',
      slug: 'blue-crab',
      azureLocation: 'westeurope',
      azureImage: 'Canonical:ubuntu-24_04-lts:server:latest',
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const lease = created.body.lease
    const [vm] = azure.ofType(VM)
    expect(lease).toMatchObject({
      provider: 'azure',
      state: 'active',
      serverType: 'Standard_D32ads_v6',
      cloudID: vm.name,
      region: 'westeurope',
      market: 'spot',
    })
    expect(lease.host).toMatch(/^203\.0\.113\./)
    expect(vm.location).toBe('westeurope')
    expect(vm.tags).toMatchObject({ crabbox: 'true', lease: lease.id, slug: 'blue-crab', provider: 'azure', keep: 'false' })
    expect(vm.properties).toMatchObject({
      priority: 'Spot',
      storageProfile: { imageReference: { publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server' } },
      osProfile: { adminUsername: 'crabbox', linuxConfiguration: { ssh: { publicKeys: [{ keyData: publicKey }] } } },
    })

    const pool = await api(adminCaller, 'GET', '/v1/pool?provider=azure')
    expect(pool.status).toBe(200)
    expect(pool.body.machines.map((m: { name: string }) => m.name)).toEqual([vm.name])

    expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`, { delete: true })).status).toBe(200)
    expect(leftovers()).toEqual([])
  })

  it('falls back to on-demand when spot has no capacity for any size, and refuses with every attempt when nothing is left', async () => {
    azure = createFakeAzure({ noSpot: true })
    await useAzure(secrets())
    const spotless = await createLease({
      class: 'standard',
      serverType: 'Standard_D2ads_v6',
      capacity: { fallback: 'on-demand-after-120s' },
    })
    expect(spotless.status).toBe(201)
    expect(spotless.body.lease).toMatchObject({ serverType: 'Standard_D2ads_v6', market: 'on-demand' })
    const spotOnly = await createLease({ class: 'standard', serverType: 'Standard_D2ads_v6', capacity: { fallback: 'none' } })
    expect(spotOnly.status).toBe(503)
    expect(spotOnly.body.message).toMatch(/OverconstrainedAllocationRequest/)

    azure = createFakeAzure({ unavailableSizes: ['Standard_D2ads_v6'] })
    await useAzure(secrets())
    const refused = await createLease({ class: 'standard', serverType: 'Standard_D2ads_v6' })
    expect(refused.status).toBe(503)
    expect(refused.body.error).toBe('no_capacity')
    expect(refused.body.message).toMatch(/SkuNotAvailable/)
    expect(leftovers()).toEqual([])
  })

  it('a create that fails after the VM exists is a 502 with the Azure message and leaves nothing behind', async () => {
    azure.inject({
      kind: 'error',
      method: 'GET',
      path: /virtualmachines\/crabbox-[^/]+$/,
      status: 409,
      code: 'OperationNotAllowed',
      message: 'The VM is in a state that does not allow this.',
    })
    const failed = await createLease({ class: 'standard' })
    expect(failed.status).toBe(502)
    expect(failed.body.message).toMatch(/The VM is in a state that does not allow this\. \(OperationNotAllowed, request /)
    expect(leftovers()).toEqual([])
  })

  it('without the service principal secrets the lease is a 503 naming them, and nothing is called', async () => {
    await useAzure({ AZURE_TENANT_ID: azure.tenantId })
    const refused = await createLease({ class: 'standard' })
    expect(refused.status).toBe(503)
    expect(refused.body.message).toMatch(/AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_SUBSCRIPTION_ID/)
    expect(azure.calls).toHaveLength(0)
  })

  it('refuses the fields Azure does not take, naming the Azure one to use', async () => {
    for (const [body, pattern] of [
      [{ location: 'fsn1' }, /location: Azure leases do not take location; use azureLocation/],
      [{ awsAMI: 'ami-0123456789abcdef0' }, /awsAMI: Azure leases do not take awsAMI/],
      [{ capacity: { strategy: 'cheapest' } }, /capacity\.strategy/],
    ] as const) {
      const refused = await createLease(body)
      expect(refused.status).toBe(400)
      expect(refused.body.message).toMatch(pattern)
    }
    expect(azure.calls).toHaveLength(0)
  })

  it('polls long-running operations every CRABBOX_AZURE_POLL_MS when Azure names no Retry-After', async () => {
    const pauses: number[] = []
    await useAzure({ ...secrets(), CRABBOX_AZURE_POLL_MS: '123' }, { timeoutMs: 300, sleep: async (ms: number) => void pauses.push(ms) })
    const created = await createLease({ class: 'standard' })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    expect(pauses.length).toBeGreaterThan(0)
    expect(new Set(pauses)).toEqual(new Set([123]))
  })
})
