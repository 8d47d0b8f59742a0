import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { createFakeEc2, serveFake, type FakeEc2 } from '../support/fake-ec2.js'
import type { ServedFake } from '../support/fake-faults.js'

/**
 * `crabbox image create` and `image promote` as subprocesses: against `crabbox
 * broker dev` whose AWS provider talks to the EC2 fake on loopback, and in direct
 * mode against the same fake. Proven only against the fake, not real EC2.
 */

const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJyb2tlci10ZXN0LWtleS1tYXRlcmlhbC0wMDAwMDAw crabbox test'
const OWNER = 'imager@example.com'

describe('crabbox image against broker dev and the EC2 fake', () => {
  let fake: FakeEc2
  let served: ServedFake
  let broker: BrokerHandle
  let home: CliHome

  beforeAll(async () => {
    fake = createFakeEc2()
    served = await serveFake(fake.handler)
    broker = await startBroker({
      env: {
        CRABBOX_SHARED_TOKEN: 'e2e-image-shared',
        CRABBOX_ADMIN_TOKEN: 'e2e-image-admin',
        CRABBOX_DEFAULT_PROVIDER: 'aws',
        CRABBOX_AWS_ACCESS_KEY_ID: fake.accessKeyId,
        CRABBOX_AWS_SECRET_ACCESS_KEY: fake.secretAccessKey,
        CRABBOX_AWS_ENDPOINT: served.url,
      },
    })
    home = cliHome()
  })

  afterAll(async () => {
    await broker?.stop()
    await served?.close()
    if (home) rmSync(home.dir, { recursive: true, force: true })
  })

  const awsLease = async (leaseID: string, owner = OWNER) => {
    const response = await fetch(`${broker.url}/v1/leases`, {
      method: 'POST',
      headers: { authorization: 'Bearer e2e-image-shared', 'x-crabbox-owner': owner, 'content-type': 'application/json' },
      body: JSON.stringify({ provider: 'aws', class: 'standard', sshPublicKey: publicKey, leaseID }),
    })
    const body = (await response.json()) as any
    expect(response.status, JSON.stringify(body)).toBe(201)
    return body.lease
  }
  const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
    runCli(args, {
      home,
      env: {
        CRABBOX_COORDINATOR: broker.url,
        CRABBOX_COORDINATOR_TOKEN: 'e2e-image-shared',
        CRABBOX_OWNER: OWNER,
        CRABBOX_ADMIN_TOKEN: undefined,
        ...env,
      },
      timeoutMs: 90_000,
    })

  it("the lease's owner bakes an image and waits for it; the admin promotes it; the next AWS lease starts from it", async () => {
    const lease = await awsLease('cbx_e2e0000a0001')
    const created = await cli(['image', 'create', '--id', lease.id, '--name', 'crabbox-e2e (warm)', '--wait', '--json'])
    expect(created.code, created.stderr).toBe(0)
    const image = JSON.parse(created.stdout)
    expect(image).toMatchObject({ name: 'crabbox-e2e (warm)', state: 'available', region: 'eu-west-1', leaseID: lease.id })
    expect(fake.calls.find((c) => c.action === 'CreateImage')!.params).toMatchObject({ InstanceId: lease.cloudID, NoReboot: 'true' })

    // Promoting needs the admin token: exit 3 naming the setting.
    const refused = await cli(['image', 'promote', image.id])
    expect(refused.code).toBe(3)
    expect(refused.stderr).toContain('broker.adminToken')

    const promoted = await cli(['image', 'promote', image.id], { CRABBOX_ADMIN_TOKEN: 'e2e-image-admin' })
    expect(promoted.code, promoted.stderr).toBe(0)
    expect(promoted.stdout).toMatch(
      new RegExp(`^promoted image=${image.id} name="crabbox-e2e \\(warm\\)" state=available region=eu-west-1 `),
    )

    await awsLease('cbx_e2e0000a0002', 'next@example.com')
    expect(fake.calls.filter((c) => c.action === 'RunInstances').at(-1)!.params.ImageId).toBe(image.id)
  })

  it('someone else cannot image the lease (exit 4); bad names and AMI IDs are exit 2', async () => {
    const lease = await awsLease('cbx_e2e0000a0003')
    const stranger = await cli(['image', 'create', '--id', lease.id, '--name', 'not-mine'], { CRABBOX_OWNER: 'stranger@example.com' })
    expect(stranger.code).toBe(4)
    const badName = await cli(['image', 'create', '--id', lease.id, '--name', 'x'])
    expect(badName.code).toBe(2)
    expect(badName.stderr).toContain('--name')
    const badAmi = await cli(['image', 'promote', 'i-123'], { CRABBOX_ADMIN_TOKEN: 'e2e-image-admin' })
    expect(badAmi.code).toBe(2)
    expect(badAmi.stderr).toContain('AMI')
    const noLease = await cli(['image', 'create', '--name', 'no-lease'])
    expect(noLease.code).toBe(2)
  })
})

describe('crabbox image in direct mode (aws provider, EC2 fake)', () => {
  it('images a direct-mode lease by slug and promote sets aws.ami in the user config', async () => {
    const fake = createFakeEc2()
    const served = await serveFake(fake.handler)
    const home = cliHome()
    try {
      const instance = fake.seedInstance({ tags: { crabbox: 'true', lease: 'cbx_0000000000d1', slug: 'direct-crab' } })
      const env = {
        AWS_ACCESS_KEY_ID: fake.accessKeyId,
        AWS_SECRET_ACCESS_KEY: fake.secretAccessKey,
        CRABBOX_AWS_ENDPOINT: served.url,
        CRABBOX_COORDINATOR: undefined,
      }
      const created = await runCli(
        ['image', 'create', '--provider', 'aws', '--id', 'direct-crab', '--name', 'direct', '--wait', '--json'],
        {
          home,
          env,
        },
      )
      expect(created.code, created.stderr).toBe(0)
      const image = JSON.parse(created.stdout)
      expect(image).toMatchObject({ state: 'available', leaseID: 'cbx_0000000000d1' })
      expect(fake.images.get(image.id)!.instanceId).toBe(instance)

      const promoted = await runCli(['image', 'promote', '--provider', 'aws', image.id], { home, env })
      expect(promoted.code, promoted.stderr).toBe(0)
      const config = parse(readFileSync(join(home.env.XDG_CONFIG_HOME, 'crabbox', 'config.yaml'), 'utf8'))
      expect(config.aws.ami).toBe(image.id)

      const local = await runCli(['image', 'create', '--provider', 'local', '--id', 'x', '--name', 'nope'], { home, env })
      expect(local.code).toBe(2)
      expect(local.stderr).toContain('needs a broker or the aws provider')
    } finally {
      await served.close()
      rmSync(home.dir, { recursive: true, force: true })
    }
  })
})
