import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, runCli } from '../support/cli.js'
import { createFakeAzure, serveFake, type ServedFake } from '../support/fake-azure.js'
import { bootstrapFrom, runnerWorkRoot } from '../support/cloud-runner.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { gitRepo } from '../support/fixtures.js'

/**
 * `crabbox run --provider azure` through the broker under real workerd
 * (`crabbox broker dev`), its Azure secrets pointing at the fake ARM API on
 * loopback; the VM's public IP is a real sshd host that accepts exactly the
 * key written into the custom data.
 */
describe('brokered Azure leases under workerd', () => {
  let host: SshHost
  let fake: ReturnType<typeof createFakeAzure>
  let served: ServedFake
  let broker: BrokerHandle
  let workRoot: string
  let repo: string

  beforeAll(async () => {
    host = await sshHost({ ports: [2222, 22], name: 'azure-brokered', privateDirs: ['/usr/local/bin', '/var/lib/crabbox'] })
    fake = createFakeAzure({
      addressFor: () => host.address,
      onCreate: (vm) => bootstrapFrom(host, vm.customData),
    })
    served = await serveFake(fake.handler)
    broker = await startBroker({
      env: {
        CRABBOX_SHARED_TOKEN: 'e2e-shared',
        CRABBOX_ADMIN_TOKEN: 'e2e-admin',
        CRABBOX_AZURE_TENANT_ID: fake.tenantId,
        CRABBOX_AZURE_CLIENT_ID: fake.clientId,
        CRABBOX_AZURE_CLIENT_SECRET: fake.clientSecret,
        CRABBOX_AZURE_SUBSCRIPTION_ID: fake.subscriptionId,
        CRABBOX_AZURE_ENDPOINT: served.url,
        CRABBOX_AZURE_LOGIN_ENDPOINT: served.url,
        CRABBOX_AZURE_POLL_MS: '20',
      },
    })
    workRoot = runnerWorkRoot('crabbox-azure-brokered-')
    repo = gitRepo('crabbox-azure-brokered-repo-')
  })

  afterAll(async () => {
    await broker?.stop()
    await served?.close()
    await host?.stop()
    rmSync(workRoot, { recursive: true, force: true })
    rmSync(repo, { recursive: true, force: true })
  })

  it('run --provider azure makes the VM where azure.location says, runs the command on it, and release deletes every piece', async () => {
    const home = cliHome()
    const env = {
      CRABBOX_COORDINATOR: broker.url,
      CRABBOX_COORDINATOR_TOKEN: 'e2e-shared',
      CRABBOX_OWNER: 'cloud@example.com',
      CRABBOX_NO_AGENT: '1',
      CRABBOX_WORK_ROOT: workRoot,
      CRABBOX_AZURE_LOCATION: 'westeurope',
      NODE_EXTRA_CA_CERTS: undefined,
    }
    const run = await runCli(['run', '--provider', 'azure', '--class', 'standard', '--', 'sh', '-c', 'cat hello.txt; whoami'], {
      cwd: repo,
      home,
      env,
      timeoutMs: 120_000,
    })
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toContain('hello from the checkout')
    const put = fake.calls.find((c) => c.method === 'PUT' && c.path.includes('/virtualMachines/'))!
    expect(put.body).toMatchObject({ location: 'westeurope', tags: { provider: 'azure', owner: 'cloud_example.com' } })
    for (const type of ['Microsoft.Compute/virtualMachines', 'Microsoft.Network/networkInterfaces', 'Microsoft.Network/publicIPAddresses'])
      expect(fake.ofType(type), type).toHaveLength(0)
    rmSync(home.dir, { recursive: true, force: true })
  })
})
