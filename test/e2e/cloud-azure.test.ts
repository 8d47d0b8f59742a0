import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli } from '../support/cli.js'
import { createFakeAzure, serveFake, type ServedFake } from '../support/fake-azure.js'
import { bootstrapFrom as bootstrapWith, runnerWorkRoot } from '../support/cloud-runner.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { gitRepo } from '../support/fixtures.js'

/**
 * `--provider azure` in direct mode, end to end: the built CLI talks to the
 * fake ARM and token endpoints on loopback, and the VM's public IP is a real
 * sshd test host. The test plays cloud-init's part from the custom data the
 * CLI sent (the lease key and the readiness probe), so a wrong key fails the run.
 */

const VM = 'Microsoft.Compute/virtualMachines'
const NIC = 'Microsoft.Network/networkInterfaces'
const PIP = 'Microsoft.Network/publicIPAddresses'
const DISK = 'Microsoft.Compute/disks'

let host: SshHost
let workRoot: string
let repo: string
const served: ServedFake[] = []

const bootstrapFrom = (userData: string) => bootstrapWith(host, userData)

beforeAll(async () => {
  host = await sshHost({ ports: [2222, 22], name: 'azure', privateDirs: ['/usr/local/bin', '/var/lib/crabbox'] })
  workRoot = runnerWorkRoot('crabbox-azure-work-')
  repo = gitRepo('crabbox-azure-repo-')
})

afterAll(async () => {
  for (const s of served) await s.close()
  await host?.stop()
  rmSync(workRoot, { recursive: true, force: true })
  rmSync(repo, { recursive: true, force: true })
})

async function fakeAzure(options: Parameters<typeof createFakeAzure>[0] = {}) {
  const fake = createFakeAzure(options)
  const server = await serveFake(fake.handler)
  served.push(server)
  const env = {
    CRABBOX_NO_AGENT: '1',
    NODE_EXTRA_CA_CERTS: undefined,
    CRABBOX_WORK_ROOT: workRoot,
    AZURE_TENANT_ID: fake.tenantId,
    AZURE_CLIENT_ID: fake.clientId,
    AZURE_CLIENT_SECRET: fake.clientSecret,
    AZURE_SUBSCRIPTION_ID: fake.subscriptionId,
    CRABBOX_AZURE_ENDPOINT: server.url,
    CRABBOX_AZURE_LOGIN_ENDPOINT: server.url,
    CRABBOX_AZURE_POLL_MS: '20',
    CRABBOX_AZURE_DELETE_RETRY_MS: '20',
  }
  return { fake, env }
}

const leftovers = (fake: ReturnType<typeof createFakeAzure>) => [VM, NIC, PIP, DISK].flatMap((type) => fake.ofType(type).map((r) => r.name))

describe('direct-mode Azure against the fake ARM API and a real SSH host', () => {
  it('crabbox run --provider azure creates the network, IP, NIC and spot VM, runs, and deletes every piece', async () => {
    const { fake, env } = await fakeAzure({ addressFor: () => host.address, onCreate: (vm) => bootstrapFrom(vm.customData) })
    const home = cliHome()
    const run = await runCli(['run', '--provider', 'azure', '--class', 'standard', '--', 'sh', '-c', 'cat hello.txt; whoami'], {
      cwd: repo,
      home,
      env,
      timeoutMs: 90_000,
    })
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toContain('hello from the checkout')
    expect(run.stdout).toContain('crabbox')
    const put = fake.calls.find((c) => c.method === 'PUT' && c.path.includes('/virtualMachines/'))!
    expect(put.body).toMatchObject({
      location: 'eastus',
      tags: { crabbox: 'true', provider: 'azure', keep: 'false', class: 'standard', server_type: 'Standard_D32ads_v6' },
      properties: { hardwareProfile: { vmSize: 'Standard_D32ads_v6' }, priority: 'Spot', evictionPolicy: 'Delete' },
    })
    expect(leftovers(fake)).toEqual([])
    // The shared network stays, tagged as crabbox's, with one SSH rule per port.
    const nsg = fake.ofType('Microsoft.Network/networkSecurityGroups')[0]
    expect(nsg.tags).toEqual({ managed_by: 'crabbox' })
    expect((nsg.properties.securityRules as Array<{ name: string }>).map((r) => r.name)).toEqual(['crabbox-ssh-2222-0', 'crabbox-ssh-22-0'])
    rmSync(home.dir, { recursive: true, force: true })
  })

  it('a create that fails after the VM exists reports the Azure message and request ID and leaves nothing behind', async () => {
    const { fake, env } = await fakeAzure({ addressFor: () => host.address })
    fake.inject({
      kind: 'error',
      method: 'GET',
      path: /virtualmachines\/crabbox-[^/]+$/,
      status: 409,
      code: 'OperationNotAllowed',
      message: 'The VM is in a state that does not allow this.',
    })
    const result = await runCli(['run', '--provider', 'azure', '--class', 'standard', '--', 'true'], { cwd: repo, env, timeoutMs: 90_000 })
    expect(result.code).toBe(5)
    expect(result.stderr).toMatch(/The VM is in a state that does not allow this\. \(OperationNotAllowed, request [0-9a-f-]{36}\)/)
    expect(fake.calls.some((c) => c.method === 'PUT' && c.path.includes('/virtualMachines/'))).toBe(true)
    expect(leftovers(fake)).toEqual([])
  })

  it('without a service principal secret it exits 3 naming the variable', async () => {
    const { env } = await fakeAzure()
    const result = await runCli(['run', '--provider', 'azure', '--', 'true'], {
      cwd: repo,
      env: { ...env, AZURE_CLIENT_SECRET: undefined },
    })
    expect(result.code).toBe(3)
    expect(result.stderr).toMatch(/AZURE_CLIENT_SECRET/)
  })

  it('crabbox cleanup --provider azure deletes only expired, unkept crabbox VMs (with their NIC, IP and disk)', async () => {
    const { fake, env } = await fakeAzure()
    const now = Math.floor(Date.now() / 1000)
    const rg = fake.seed(fake.groupPath('crabbox-leases'), { location: 'eastus', tags: { managed_by: 'crabbox' }, properties: {} })
    const tags = (lease: string, over: Record<string, string> = {}) => ({
      crabbox: 'true',
      created_by: 'crabbox',
      provider: 'azure',
      lease,
      slug: `s-${lease.slice(-4)}`,
      keep: 'false',
      expires_at: String(now - 7200),
      ...over,
    })
    const seedVm = (name: string, vmTags: Record<string, string>) => {
      const pip = fake.seed(`${rg}/providers/Microsoft.Network/publicIPAddresses/${name}-pip`, {
        tags: { lease: vmTags.lease ?? '' },
        properties: { ipAddress: '192.0.2.9' },
      })
      const nic = fake.seed(`${rg}/providers/Microsoft.Network/networkInterfaces/${name}-nic`, {
        tags: { lease: vmTags.lease ?? '' },
        properties: { ipConfigurations: [{ properties: { publicIPAddress: { id: pip } } }] },
      })
      fake.seed(`${rg}/providers/Microsoft.Compute/virtualMachines/${name}`, {
        location: 'eastus',
        tags: vmTags,
        properties: {
          provisioningState: 'Succeeded',
          hardwareProfile: { vmSize: 'Standard_D32ads_v6' },
          networkProfile: { networkInterfaces: [{ id: nic }] },
        },
      })
      fake.seed(`${rg}/providers/Microsoft.Compute/disks/${name}-osdisk`, { properties: {} })
    }
    seedVm('expired', tags('cbx_0000000000e1', { expires_at: String(now - 7200) }))
    seedVm('kept', tags('cbx_0000000000e2', { keep: 'true' }))
    seedVm('fresh', tags('cbx_0000000000e3', { expires_at: String(now + 3600) }))
    seedVm('foreign', { owner: 'team' })

    const result = await runCli(['cleanup', '--provider', 'azure', '--json'], { env })
    expect(result.code, result.stderr).toBe(0)
    expect(JSON.parse(result.stdout).deleted.map((i: { name: string }) => i.name)).toEqual(['expired'])
    expect(leftovers(fake).sort()).toEqual(
      [
        'foreign',
        'foreign-nic',
        'foreign-pip',
        'foreign-osdisk',
        'fresh',
        'fresh-nic',
        'fresh-pip',
        'fresh-osdisk',
        'kept',
        'kept-nic',
        'kept-pip',
        'kept-osdisk',
      ].sort(),
    )
  })
})
