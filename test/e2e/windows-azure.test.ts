import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { createFakeAzure, serveFake, type ServedFake } from '../support/fake-azure.js'
import { gitRepo } from '../support/fixtures.js'
import { windowsHost, type WindowsHost } from '../support/windows-host.js'

/**
 * `--provider azure --target windows` in direct mode, end to end: the built
 * CLI talks to the fake ARM API on loopback, and the VM's public IP is the
 * stand-in Windows SSH server (test/support/windows-host.ts). The test plays
 * the CustomScriptExtension's part from the command crabbox sent (the lease
 * key), so a wrong key, user or command fails the run. Proven against fakes
 * only: no real Azure or Windows is involved.
 */

const VM = 'Microsoft.Compute/virtualMachines'
const EXT = 'Microsoft.Compute/virtualMachines/extensions'
const NIC = 'Microsoft.Network/networkInterfaces'
const PIP = 'Microsoft.Network/publicIPAddresses'
const DISK = 'Microsoft.Compute/disks'

const served: ServedFake[] = []
const hosts: WindowsHost[] = []
const dirs: string[] = []
afterEach(async () => {
  for (const s of served.splice(0)) await s.close()
  for (const h of hosts.splice(0)) await h.stop()
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** The first-stage script inside the extension's command line. */
const decode = (command: string) => Buffer.from(/-EncodedCommand ([A-Za-z0-9+/=]+)$/.exec(command)![1], 'base64').toString('utf16le')
const keyIn = (script: string) => /Set-Content -Encoding ascii -Path \$keys -Value '([^']+)'/.exec(script)![1]

async function rig(options: { extensionFails?: string } = {}) {
  const host = await windowsHost()
  hosts.push(host)
  const fake = createFakeAzure({
    addressFor: () => '127.0.0.1',
    onExtension: ({ command }) => host.authorize(keyIn(decode(command))),
    ...options,
  })
  const server = await serveFake(fake.handler)
  served.push(server)
  const repo = gitRepo('crabbox-windows-azure-')
  const home: CliHome = cliHome()
  dirs.push(repo, home.dir)
  const env = {
    CRABBOX_NO_AGENT: '1',
    AZURE_TENANT_ID: fake.tenantId,
    AZURE_CLIENT_ID: fake.clientId,
    AZURE_CLIENT_SECRET: fake.clientSecret,
    AZURE_SUBSCRIPTION_ID: fake.subscriptionId,
    CRABBOX_AZURE_ENDPOINT: server.url,
    CRABBOX_AZURE_LOGIN_ENDPOINT: server.url,
    CRABBOX_AZURE_POLL_MS: '20',
    CRABBOX_AZURE_DELETE_RETRY_MS: '20',
    CRABBOX_SSH_PORT: String(host.port),
    CRABBOX_SSH_FALLBACK_PORTS: String(host.port),
  }
  const cli = (args: string[]) => runCli(args, { home, cwd: repo, env, timeoutMs: 120_000 })
  const leftovers = () => [VM, EXT, NIC, PIP, DISK].flatMap((type) => fake.ofType(type).map((r) => r.name))
  return { host, fake, cli, home, repo, leftovers }
}

/** Every file under `dir`, as text. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile())
    .map((path) => readFileSync(path, 'latin1'))
}

describe('direct-mode Azure Windows against the fake ARM API and the stand-in Windows server', () => {
  it('a Windows VM with a random admin password, the bootstrap extension, SSH bootstrap, run, then every piece deleted', async () => {
    const { host, fake, cli, home, repo, leftovers } = await rig()
    const warm = await cli(['warmup', '--provider', 'azure', '--target', 'windows', '--json'])
    expect(warm.code, warm.stderr).toBe(0)
    const id = JSON.parse(warm.stdout).id as string

    const put = fake.calls.find((c) => c.method === 'PUT' && /\/virtualMachines\/[^/]+$/.test(c.path))!
    const properties = put.body!.properties as Record<string, Record<string, unknown>>
    expect(put.body!.tags).toMatchObject({ target: 'windows', windows_mode: 'normal', lease: id })
    expect(properties.storageProfile.imageReference).toEqual({
      publisher: 'MicrosoftWindowsServer',
      offer: 'WindowsServer',
      sku: '2022-datacenter-azure-edition',
      version: 'latest',
    })
    const os = properties.osProfile
    expect(os).toMatchObject({ adminUsername: 'crabadmin', windowsConfiguration: { provisionVMAgent: true } })
    expect(os).not.toHaveProperty('customData')
    expect(os).not.toHaveProperty('linuxConfiguration')
    expect(String(os.computerName).length).toBeLessThanOrEqual(15)
    const password = String(os.adminPassword)
    expect(password).toMatch(/^(?=.*[A-Z])(?=.*[a-z])(?=.*\d)(?=.*[^A-Za-z\d]).{24}$/)

    // The extension: Microsoft.Compute's CustomScriptExtension running the same first stage as EC2Launch.
    const ext = fake.calls.find((c) => c.method === 'PUT' && c.path.endsWith('/extensions/crabbox-bootstrap'))!
    const extProps = ext.body!.properties as Record<string, unknown>
    expect(extProps).toMatchObject({ publisher: 'Microsoft.Compute', type: 'CustomScriptExtension', typeHandlerVersion: '1.10' })
    const script = decode(String((extProps.protectedSettings as Record<string, unknown>).commandToExecute))
    expect(script).toContain("$keys = 'C:\\ProgramData\\ssh\\administrators_authorized_keys'")
    expect(keyIn(script)).toMatch(/^ssh-rsa /)
    // ARM never returns protectedSettings, and the stored VM keeps no password.
    expect(fake.ofType(EXT)[0].properties.protectedSettings).toBeUndefined()
    expect(JSON.stringify(fake.ofType(VM))).not.toContain(password)

    // SSH as the admin, then the same bootstrap as on AWS.
    expect(host.users).toEqual(['crabadmin'])
    expect(host.execs.map((e) => e.kind)).toEqual(['probe', 'bootstrap', 'ready'])

    const run = await cli([
      'run',
      '--id',
      id,
      '--provider',
      'azure',
      '--target',
      'windows',
      '--',
      'node',
      '-e',
      'console.log(process.argv[1])',
      '50% of "$x"',
    ])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe('50% of "$x"\n')

    const stop = await cli(['stop', id, '--provider', 'azure'])
    expect(stop.code, stop.stderr).toBe(0)
    expect(leftovers()).toEqual([])
    // The password went to Azure in the VM request only: not printed, not kept on this machine.
    for (const text of [warm.stdout, warm.stderr, run.stderr, stop.stderr, ...filesUnder(home.dir), ...filesUnder(repo)])
      expect(text.includes(password)).toBe(false)
  })

  it("a bootstrap extension that fails after the VM exists: Azure's message and request ID, and nothing left behind", async () => {
    const { fake, cli, leftovers } = await rig({ extensionFails: 'Add-WindowsCapability : The request is not supported.' })
    const run = await cli(['run', '--provider', 'azure', '--target', 'windows', '--', 'node', '-v'])
    expect(run.code).toBe(5)
    expect(run.stderr).toMatch(
      /Azure: VM has reported a failure when processing extension 'crabbox-bootstrap'.*Add-WindowsCapability : The request is not supported\..*\(VMExtensionProvisioningError, request 00000000-0000-4000-9000-\d{12}\)/,
    )
    expect(fake.calls.some((c) => c.method === 'PUT' && c.path.endsWith('/extensions/crabbox-bootstrap'))).toBe(true)
    expect(leftovers()).toEqual([])
  })
})
