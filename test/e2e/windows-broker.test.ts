import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, runCli } from '../support/cli.js'
import { createFakeEc2, serveFake, type FakeEc2 } from '../support/fake-ec2.js'
import type { ServedFake } from '../support/fake-faults.js'
import { gitRepo } from '../support/fixtures.js'
import { windowsHost, type WindowsHost } from '../support/windows-host.js'

/**
 * Brokered AWS Windows leases end to end: the broker under workerd (`crabbox
 * broker dev`) with its AWS secrets pointing at the fake EC2 on loopback makes
 * the instance with EC2Launch user data; the instance's address is the stand-in
 * Windows SSH server; the CLI bootstraps it over SSH and runs. Proven against
 * fakes only.
 */

/** The key line the EC2Launch script writes to administrators_authorized_keys. */
const keyFrom = (userData: string) => /Set-Content -Encoding ascii -Path \$keys -Value '([^']+)'/.exec(userData)![1]

describe('brokered AWS Windows under workerd (fake EC2, stand-in Windows server)', () => {
  let host: WindowsHost
  let fake: FakeEc2
  let served: ServedFake
  let broker: BrokerHandle
  let repo: string

  beforeAll(async () => {
    host = await windowsHost()
    fake = createFakeEc2({ addressFor: () => '127.0.0.1', onLaunch: (instance) => host.authorize(keyFrom(instance.userData)) })
    served = await serveFake(fake.handler)
    const group = fake.seedSecurityGroup('eu-west-1', 'windows-ssh')
    broker = await startBroker({
      env: {
        CRABBOX_SHARED_TOKEN: 'e2e-shared',
        CRABBOX_ADMIN_TOKEN: 'e2e-admin',
        CRABBOX_AWS_ACCESS_KEY_ID: fake.accessKeyId,
        CRABBOX_AWS_SECRET_ACCESS_KEY: fake.secretAccessKey,
        CRABBOX_AWS_ENDPOINT: served.url,
        // Crabbox's own group opens only 2222 and 22; the stand-in listens elsewhere.
        CRABBOX_AWS_SECURITY_GROUP_ID: group,
      },
    })
    repo = gitRepo('crabbox-windows-broker-')
  })
  afterAll(async () => {
    await broker?.stop()
    await served?.close()
    await host?.stop()
    rmSync(repo, { recursive: true, force: true })
  })

  it('run --provider aws --target windows: the broker launches it, the CLI bootstraps and runs, release terminates it', async () => {
    const home = cliHome()
    const env = {
      CRABBOX_COORDINATOR: broker.url,
      CRABBOX_COORDINATOR_TOKEN: 'e2e-shared',
      CRABBOX_OWNER: 'windows@example.com',
      CRABBOX_NO_AGENT: '1',
      CRABBOX_SSH_PORT: String(host.port),
      CRABBOX_SSH_FALLBACK_PORTS: String(host.port),
      CRABBOX_CAPACITY_MARKET: 'on-demand',
      NODE_EXTRA_CA_CERTS: undefined,
    }
    const run = await runCli(
      [
        'run',
        '--provider',
        'aws',
        '--target',
        'windows',
        '--',
        'node',
        '-e',
        'console.log(require("fs").readFileSync("hello.txt", "utf8").trim(), process.argv[1])',
        '"quoted" & 100%',
      ],
      { home, cwd: repo, env, timeoutMs: 120_000 },
    )
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe('hello from the checkout "quoted" & 100%\n')
    const [launched] = fake.calls.filter((c) => c.action === 'RunInstances')
    expect(launched).toBeDefined()
    expect(keyFrom(Buffer.from(launched.params.UserData, 'base64').toString('utf8'))).toMatch(/^ssh-rsa /)
    expect(host.users).toEqual(['Administrator'])
    expect(host.execs.map((e) => e.kind)).toEqual(['probe', 'bootstrap', 'ready', 'program', 'program'])
    // Released: the broker terminates the instance (its cleanup may finish just after the reply).
    for (let i = 0; i < 50 && fake.live().length; i++) await new Promise((resolve) => setTimeout(resolve, 200))
    expect(fake.live()).toEqual([])
    rmSync(home.dir, { recursive: true, force: true })
  })
})
