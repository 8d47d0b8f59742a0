import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Env } from '../../worker/env.js'
import type { FleetDeps } from '../../worker/fleet/deps.js'
import { createAzureBrokerProvider } from '../../worker/providers/azure.js'
import { createFakeAzure } from '../support/fake-azure.js'
import { createFakeEc2, type FakeEc2 } from '../support/fake-ec2.js'
import { asFetch } from '../support/fake-faults.js'
import { createFakeHetzner } from '../support/fake-hetzner.js'
import { api, inFleet, leaseId, shared } from './broker-support.js'
import { fastCloud, restoreProviders, useCloudFakes } from './cloud-support.js'

/**
 * Brokered Windows leases on AWS: the broker launches the Windows image with
 * EC2Launch user data (OpenSSH on with the lease's RSA key) and records the
 * target, mode, admin user and Windows work root; the CLI bootstraps the
 * machine over SSH (test/e2e/windows-aws.test.ts proves that half in direct
 * mode). Against the fake EC2 only.
 */

const peter = shared('peter@example.com')
const rsaKey = `ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ${'C'.repeat(40)} crabbox windows test`
let ec2: FakeEc2

beforeEach(async () => {
  ec2 = createFakeEc2()
  // The operator's image is a Linux one: a Windows lease must not take it.
  await useCloudFakes({ hetzner: createFakeHetzner(), ec2 }, { CRABBOX_AWS_AMI: 'ami-0123456789abcdef0' })
})
afterEach(async () => {
  ec2.releaseHung()
  await restoreProviders()
})

const createLease = (body: Record<string, unknown>) =>
  api(peter, 'POST', '/v1/leases', { sshPublicKey: rsaKey, leaseID: leaseId(), provider: 'aws', class: 'standard', ...body })

describe('brokered AWS Windows leases', () => {
  it('launch the Windows image with EC2Launch user data and record the admin and the Windows work root', async () => {
    const created = await createLease({ target: 'windows' })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const [instance] = ec2.live()
    expect(instance.userData).toMatch(/^version: 1\.0\ntasks:\n/)
    expect(instance.userData).toContain(`-Value '${rsaKey}'`)
    expect(instance.tags).toMatchObject({ target: 'windows', windows_mode: 'normal' })
    const launch = ec2.calls.find((c) => c.action === 'RunInstances')!
    expect(launch.params).not.toHaveProperty('CpuOptions.NestedVirtualization')
    const images = ec2.calls.find((c) => c.action === 'DescribeImages')!
    expect(JSON.stringify(images.params)).toContain('Windows_Server-2022-English-Full-Base-*')
    expect(launch.params.ImageId).not.toBe('ami-0123456789abcdef0')
    expect(created.body.lease).toMatchObject({
      target: 'windows',
      windowsMode: 'normal',
      sshUser: 'Administrator',
      workRoot: 'C:\\crabbox',
      host: instance.ip,
    })
  })

  it('WSL2: nested virtualization and the distribution work root', async () => {
    const created = await createLease({ target: 'windows', windowsMode: 'wsl2' })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    expect(ec2.calls.find((c) => c.action === 'RunInstances')!.params['CpuOptions.NestedVirtualization']).toBe('enabled')
    expect(created.body.lease).toMatchObject({ windowsMode: 'wsl2', sshUser: 'Administrator', workRoot: '/work/crabbox' })
  })

  it('Hetzner still refuses Windows, naming who can', async () => {
    const refused = await createLease({ provider: 'hetzner', target: 'windows' })
    expect(refused.status).toBe(400)
    expect(refused.body.message).toContain('providers that can run windows: aws, azure, ssh (an existing Windows host)')
    expect(ec2.live()).toEqual([])
  })
})

describe('brokered Azure Windows leases', () => {
  it('a Windows VM with the admin and the bootstrap extension; the record has the admin and the Windows work root', async () => {
    const azure = createFakeAzure()
    await inFleet((deps: FleetDeps) => {
      const env = {
        AZURE_TENANT_ID: azure.tenantId,
        AZURE_CLIENT_ID: azure.clientId,
        CRABBOX_AZURE_CLIENT_SECRET: azure.clientSecret,
        AZURE_SUBSCRIPTION_ID: azure.subscriptionId,
        CRABBOX_AZURE_ENDPOINT: 'https://management.azure.fake',
        CRABBOX_AZURE_LOGIN_ENDPOINT: 'https://login.azure.fake',
        // The operator's Linux image: a Windows lease must not take it.
        CRABBOX_AZURE_IMAGE: 'Canonical:ubuntu-24_04-lts:server:latest',
      }
      const provider = createAzureBrokerProvider(
        { storage: deps.storage, env: env as unknown as Env, fetch: asFetch(azure.handler) as typeof fetch },
        fastCloud,
      )
      const fallback = deps.providers
      deps.providers = { get: (name) => (name === 'azure' ? provider : fallback.get(name)), names: () => fallback.names() }
    })
    const created = await createLease({ provider: 'azure', target: 'windows' })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const put = azure.calls.find((c) => c.method === 'PUT' && /\/virtualMachines\/[^/]+$/.test(c.path))!
    const properties = put.body!.properties as Record<string, Record<string, unknown>>
    expect(properties.storageProfile.imageReference).toMatchObject({ publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer' })
    expect(properties.osProfile).toMatchObject({ adminUsername: 'crabadmin', windowsConfiguration: { provisionVMAgent: true } })
    const ext = azure.calls.find((c) => c.method === 'PUT' && c.path.endsWith('/extensions/crabbox-bootstrap'))!
    const command = String(
      ((ext.body!.properties as Record<string, unknown>).protectedSettings as Record<string, unknown>).commandToExecute,
    )
    const encoded = /-EncodedCommand ([A-Za-z0-9+/=]+)$/.exec(command)![1]
    const script = new TextDecoder('utf-16le').decode(Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0)))
    expect(script).toContain(`-Value '${rsaKey}'`)
    expect(created.body.lease).toMatchObject({ target: 'windows', windowsMode: 'normal', sshUser: 'crabadmin', workRoot: 'C:\\crabbox' })
  })
})
