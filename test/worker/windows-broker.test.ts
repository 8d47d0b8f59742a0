import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createFakeEc2, type FakeEc2 } from '../support/fake-ec2.js'
import { createFakeHetzner } from '../support/fake-hetzner.js'
import { api, leaseId, shared } from './broker-support.js'
import { restoreProviders, useCloudFakes } from './cloud-support.js'

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

  it('Azure and Hetzner still refuse Windows, naming who can', async () => {
    const refused = await createLease({ provider: 'hetzner', target: 'windows' })
    expect(refused.status).toBe(400)
    expect(refused.body.message).toContain('providers that can run windows: aws, azure (direct mode), ssh (an existing Windows host)')
    expect(ec2.live()).toEqual([])
  })
})
