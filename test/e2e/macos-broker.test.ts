import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, runCli } from '../support/cli.js'
import { createFakeEc2, serveFake, type FakeEc2 } from '../support/fake-ec2.js'
import type { ServedFake } from '../support/fake-faults.js'
import { gitRepo } from '../support/fixtures.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'

/**
 * Brokered AWS macOS leases end to end: the broker under workerd (`crabbox
 * broker dev`) with its AWS secrets pointing at the fake EC2 on loopback
 * launches the instance on the dedicated host with the macOS user data. A Linux
 * sshd host plays the Mac: on launch it runs that user data as root (work root,
 * crabbox-ready) and takes the key pair's key for `ec2-user` on port 22, as the
 * macOS AMI would. The CLI waits for crabbox-ready, syncs and runs. Proven
 * against fakes and a stand-in only: macOS's own tools are not run here.
 */

describe('brokered AWS macOS under workerd (fake EC2, a Linux sshd host as the Mac)', () => {
  let mac: SshHost
  let fake: FakeEc2
  let served: ServedFake
  let broker: BrokerHandle
  let repo: string

  beforeAll(async () => {
    mac = await sshHost({
      name: 'mac-broker',
      userAliases: ['ec2-user'],
      privateDirs: ['/Users/ec2-user', '/usr/local/bin', '/var/db/crabbox'],
    })
    fake = createFakeEc2({
      addressFor: () => mac.address,
      onLaunch: async (instance) => {
        const pair = fake.keyPairs.get(`${instance.region}/${instance.tags.provider_key}`)!
        await mac.authorize(pair.material)
        const boot = await mac.run(instance.userData)
        if (boot.code !== 0) throw new Error(`the macOS user data failed on the stand-in: ${boot.stderr}`)
      },
    })
    served = await serveFake(fake.handler)
    broker = await startBroker({
      env: {
        CRABBOX_SHARED_TOKEN: 'e2e-shared',
        CRABBOX_ADMIN_TOKEN: 'e2e-admin',
        CRABBOX_AWS_ACCESS_KEY_ID: fake.accessKeyId,
        CRABBOX_AWS_SECRET_ACCESS_KEY: fake.secretAccessKey,
        CRABBOX_AWS_ENDPOINT: served.url,
      },
    })
    repo = gitRepo('crabbox-macos-broker-')
  }, 120_000)
  afterAll(async () => {
    await broker?.stop()
    await served?.close()
    await mac?.stop()
    if (repo) rmSync(repo, { recursive: true, force: true })
  })

  it('run --provider aws --target macos: launched on the host, reached as ec2-user@22 in the Mac work root, terminated on release', async () => {
    const home = cliHome()
    const env = {
      CRABBOX_COORDINATOR: broker.url,
      CRABBOX_COORDINATOR_TOKEN: 'e2e-shared',
      CRABBOX_OWNER: 'mac@example.com',
      CRABBOX_NO_AGENT: '1',
      CRABBOX_AWS_MAC_HOST_ID: 'h-0123456789abcdef0',
      NODE_EXTRA_CA_CERTS: undefined,
    }
    const run = await runCli(['run', '--provider', 'aws', '--target', 'macos', '--', 'sh', '-c', 'pwd; echo "$USER"; cat hello.txt'], {
      home,
      cwd: repo,
      env,
      timeoutMs: 120_000,
    })
    expect(run.code, run.stderr).toBe(0)
    const [pwd, user, text] = run.stdout.trim().split('\n')
    expect(pwd).toMatch(/^\/Users\/ec2-user\/crabbox\//)
    expect(user).toBe('ec2-user')
    expect(text).toBe('hello from the checkout')
    const [launch] = fake.calls.filter((c) => c.action === 'RunInstances')
    expect(launch.params).toMatchObject({
      InstanceType: 'mac2.metal',
      'Placement.HostId': 'h-0123456789abcdef0',
      'Placement.Tenancy': 'host',
    })
    expect(launch.params['InstanceMarketOptions.MarketType']).toBeUndefined()
    // Released: the broker terminates the instance (its cleanup may finish just after the reply); the host stays.
    for (let i = 0; i < 50 && fake.live().length; i++) await new Promise((resolve) => setTimeout(resolve, 200))
    expect(fake.live()).toEqual([])
    expect(fake.calls.filter((c) => /Host/.test(c.action))).toEqual([])
    rmSync(home.dir, { recursive: true, force: true })
  })
})
