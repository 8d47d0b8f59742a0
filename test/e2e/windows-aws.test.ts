import { rmSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { cliHome, runCli } from '../support/cli.js'
import { createFakeEc2, serveFake } from '../support/fake-ec2.js'
import type { ServedFake } from '../support/fake-faults.js'
import { gitRepo } from '../support/fixtures.js'
import { windowsHost, type WindowsHost } from '../support/windows-host.js'

/**
 * `--provider aws --target windows` in direct mode, end to end: the built CLI
 * talks to the fake EC2 on loopback, and the instance's address is the
 * stand-in Windows SSH server (test/support/windows-host.ts). The test plays
 * EC2Launch's part from the user data the CLI sent (the lease key), so a wrong
 * key, user or user data fails the run. Proven against fakes only: no real
 * EC2, Windows or WSL2 is involved.
 */

const served: ServedFake[] = []
const hosts: WindowsHost[] = []
const repos: string[] = []
afterEach(async () => {
  for (const s of served.splice(0)) await s.close()
  for (const h of hosts.splice(0)) await h.stop()
  for (const r of repos.splice(0)) rmSync(r, { recursive: true, force: true })
})

/** The key line the EC2Launch script writes to administrators_authorized_keys. */
const keyFrom = (userData: string) => /Set-Content -Encoding ascii -Path \$keys -Value '([^']+)'/.exec(userData)![1]

async function rig(options: Parameters<typeof windowsHost>[0] = {}) {
  const host = await windowsHost(options)
  hosts.push(host)
  const fake = createFakeEc2({ addressFor: () => '127.0.0.1', onLaunch: (instance) => host.authorize(keyFrom(instance.userData)) })
  const server = await serveFake(fake.handler)
  served.push(server)
  const repo = gitRepo('crabbox-windows-aws-')
  repos.push(repo)
  const home = cliHome()
  const env = {
    AWS_ACCESS_KEY_ID: fake.accessKeyId,
    AWS_SECRET_ACCESS_KEY: fake.secretAccessKey,
    CRABBOX_AWS_ENDPOINT: server.url,
    CRABBOX_CAPACITY_REGIONS: 'eu-west-1',
    CRABBOX_CAPACITY_MARKET: 'on-demand',
    CRABBOX_SSH_PORT: String(host.port),
    CRABBOX_SSH_FALLBACK_PORTS: String(host.port),
    CRABBOX_AWS_CONSOLE_WAIT_MS: '0',
    CRABBOX_WINDOWS_RESTART_WAIT_MS: '100',
    CRABBOX_NO_AGENT: '1',
  }
  const cli = (args: string[]) => runCli(args, { home, cwd: repo, env, timeoutMs: 120_000 })
  return { host, fake, cli }
}

describe('direct-mode AWS Windows against the fake EC2 and the stand-in Windows server', () => {
  it('native: the Windows image and EC2Launch user data, the bootstrap over SSH, run, then terminate', async () => {
    const { host, fake, cli } = await rig()
    const warm = await cli(['warmup', '--provider', 'aws', '--target', 'windows', '--json'])
    expect(warm.code, warm.stderr).toBe(0)
    const id = JSON.parse(warm.stdout).id as string
    const launch = fake.calls.find((c) => c.action === 'RunInstances')!
    expect(launch.params).not.toHaveProperty('CpuOptions.NestedVirtualization')
    const [instance] = fake.live()
    expect(instance.userData).toMatch(/^version: 1\.0\ntasks:\n {2}- task: executeScript\n/)
    expect(instance.tags).toMatchObject({ target: 'windows', windows_mode: 'normal', lease: id })
    // The lease key is RSA: AWS imports no other kind for Windows.
    expect(keyFrom(instance.userData)).toMatch(/^ssh-rsa /)
    // SSH first (an `exit 0` probe), then the bootstrap on stdin, then crabbox-ready.ps1.
    expect(host.execs.map((e) => e.kind)).toEqual(['probe', 'bootstrap', 'ready'])
    const bootstrap = host.execs[1]
    expect(bootstrap.stdin.toString()).toContain(`Port ${host.port}\r\n`)
    expect(bootstrap.stdin.toString()).toContain(keyFrom(instance.userData))

    host.execs.length = 0
    const run = await cli([
      'run',
      '--id',
      id,
      '--provider',
      'aws',
      '--target',
      'windows',
      '--',
      'node',
      '-e',
      "console.log(require('fs').readFileSync('hello.txt', 'utf8').trim(), process.argv[1])",
      'a "b" $c %d%',
    ])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe('hello from the checkout a "b" $c %d%\n')
    expect(host.execs.map((e) => [e.kind, e.program])).toEqual([
      ['program', 'tar.exe'],
      ['program', 'node'],
    ])
    expect(host.execs[1].folder).toBe(`C:\\crabbox\\${id}\\${repos[0].split('/').pop()}`)

    const stop = await cli(['stop', id, '--provider', 'aws'])
    expect(stop.code, stop.stderr).toBe(0)
    expect(fake.live()).toEqual([])
    expect(fake.keyPairs.size).toBe(0)
  })

  it('WSL2: nested virtualization, the bootstrap run again after its restart, Linux commands through wsl.exe', async () => {
    const { host, fake, cli } = await rig({ mode: 'wsl2' })
    const run = await cli([
      'run',
      '--provider',
      'aws',
      '--target',
      'windows',
      '--windows-mode',
      'wsl2',
      '--',
      'sh',
      '-c',
      'cat hello.txt; echo "in $PWD"',
    ])
    expect(run.code, run.stderr).toBe(0)
    expect(fake.calls.find((c) => c.action === 'RunInstances')!.params['CpuOptions.NestedVirtualization']).toBe('enabled')
    expect(host.bootstrapRuns).toBe(2)
    expect(run.stderr).toContain('restarts to finish turning WSL2 on')
    const kinds = host.execs.map((e) => e.kind)
    expect(kinds.slice(0, 5), JSON.stringify(host.execs.map((e) => [e.kind, e.linux ?? e.script.slice(0, 300)]))).toEqual([
      'probe',
      'bootstrap',
      'probe',
      'bootstrap',
      'ready',
    ])
    // Everything after readiness is a Linux command line carried through wsl.exe.
    expect(
      kinds.slice(5).every((kind) => kind === 'wsl'),
      JSON.stringify(host.execs.map((e) => [e.kind, e.linux ?? e.script.slice(0, 300)])),
    ).toBe(true)
    // The command's line (staged through a file when too long for cmd.exe) carries the words as typed.
    const command = host.execs.slice(5).find((e) => `${e.linux}${e.stdin}`.includes(`sh -c 'cat hello.txt; echo "in $PWD"'`))
    expect(command, JSON.stringify(host.execs.slice(5).map((e) => [e.linux, e.stdin.toString().slice(0, 500)]))).toBeDefined()
    expect(run.stdout).toMatch(/^hello from the checkout\nin .*\/work\/crabbox\/cbx_[0-9a-f]{12}\/crabbox-windows-aws-\w+\n$/)
    expect(fake.live()).toEqual([])
  })

  it('a bootstrap that fails after the instance exists: the error names it, and the instance and key pair are gone', async () => {
    const { fake, cli } = await rig({ bootstrapFails: 'Add-WindowsCapability : The request is not supported.' })
    const run = await cli(['run', '--provider', 'aws', '--target', 'windows', '--', 'node', '-v'])
    expect(run.code).toBe(5)
    expect(run.stderr).toContain('the Windows bootstrap failed on 127.0.0.1: Add-WindowsCapability : The request is not supported.')
    expect(fake.calls.some((c) => c.action === 'TerminateInstances')).toBe(true)
    expect(fake.live()).toEqual([])
    expect(fake.keyPairs.size).toBe(0)
  })

  it('--target windows with a provider that cannot: exit 2 naming those that can, nothing made', async () => {
    await rig()
    const refused = await runCli(['run', '--provider', 'hetzner', '--target', 'windows', '--', 'node', '-v'], {
      home: cliHome(),
      cwd: repos[0],
      env: { HCLOUD_TOKEN: 'not-used' },
    })
    expect(refused.code, refused.stderr).toBe(2)
    expect(refused.stderr).toContain('providers that can run windows: aws, azure, ssh (an existing Windows host)')
  })
})
