import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli } from '../support/cli.js'
import { createFakeHetzner, serveFake, type ServedFake } from '../support/fake-hetzner.js'
import { createFakeEc2 } from '../support/fake-ec2.js'
import { bootstrapFrom as bootstrapWith, runnerWorkRoot } from '../support/cloud-runner.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { collectOutput, gitRepo, until } from '../support/fixtures.js'

/**
 * `crabbox run --provider hetzner|aws` in direct mode, end to end: the built
 * CLI talks to the fake cloud API on loopback, and the "server" the fake
 * returns is a real sshd test host. The test plays cloud-init's part from the
 * user data the CLI sent: it authorizes the key listed there and installs the
 * crabbox-ready script rendered there, so a wrong key or a broken probe fails
 * the run.
 */

let host: SshHost
let workRoot: string
let repo: string
const served: ServedFake[] = []

const bootstrapFrom = (userData: string) => bootstrapWith(host, userData)

beforeAll(async () => {
  host = await sshHost({ ports: [2222, 22], name: 'cloud', privateDirs: ['/usr/local/bin', '/var/lib/crabbox'] })
  workRoot = runnerWorkRoot('crabbox-cloud-work-')
  repo = gitRepo('crabbox-cloud-repo-')
})

afterAll(async () => {
  for (const s of served) await s.close()
  await host?.stop()
  rmSync(workRoot, { recursive: true, force: true })
  rmSync(repo, { recursive: true, force: true })
})

const baseEnv = () => ({ CRABBOX_NO_AGENT: '1', NODE_EXTRA_CA_CERTS: undefined, CRABBOX_WORK_ROOT: workRoot })

describe('direct-mode cloud runs against a real SSH host', () => {
  it('crabbox run --provider hetzner creates the server, syncs, runs, streams and deletes it', async () => {
    const home = cliHome()
    const keyDirOf = (leaseId: string) => join(home.env.XDG_CONFIG_HOME, 'crabbox', 'testboxes', leaseId)
    // The lease's key folder lives only as long as the lease: its public key is read when the server is created.
    let leasePublicKey = ''
    const fake = createFakeHetzner({
      addressFor: () => host.address,
      onCreate: async (s) => {
        leasePublicKey = readFileSync(join(keyDirOf(s.labels.lease), 'id_ed25519.pub'), 'utf8').trim()
        await bootstrapFrom(s.user_data)
      },
    })
    const server = await serveFake(fake.handler)
    served.push(server)
    // The command outlives the host-key check below by a few seconds.
    const child = spawnCli(['run', '--provider', 'hetzner', '--class', 'standard', '--', 'sh', '-c', 'cat hello.txt; whoami; sleep 4'], {
      cwd: repo,
      home,
      env: { ...baseEnv(), HCLOUD_TOKEN: fake.token, CRABBOX_HETZNER_API_URL: `${server.url}/v1` },
    })
    child.stdin!.end()
    const run = collectOutput(child)
    const pinned = await until(
      'the host key pin',
      () => {
        const create = fake.calls.find((c) => c.method === 'POST' && c.path === '/servers')
        const leaseId = (create?.body?.labels as Record<string, string> | undefined)?.lease
        if (!leaseId || !existsSync(join(keyDirOf(leaseId), 'known_hosts'))) return undefined
        const text = readFileSync(join(keyDirOf(leaseId), 'known_hosts'), 'utf8')
        return text.includes('ssh-ed25519') ? text : undefined
      },
      90_000,
    )
    expect(await run.done, run.stderr()).toBe(0)
    expect(run.stdout()).toContain('hello from the checkout')
    expect(run.stdout()).toContain('crabbox')
    const create = fake.calls.find((c) => c.method === 'POST' && c.path === '/servers')!
    expect(create.body).toMatchObject({
      server_type: 'ccx33',
      location: 'fsn1',
      image: 'ubuntu-24.04',
      labels: { crabbox: 'true', keep: 'false', class: 'standard' },
    })
    const leaseId = (create.body!.labels as Record<string, string>).lease
    // The key in the user data is the lease's own key, and the host key was pinned on first use.
    expect(leasePublicKey).toMatch(/^ssh-ed25519 /)
    expect(String(create.body!.user_data)).toContain(leasePublicKey)
    expect(pinned).toContain(`[${host.address}]:2222 ssh-ed25519 `)
    // Released: server and per-lease key are gone.
    expect(fake.servers.size).toBe(0)
    expect(fake.keys.size).toBe(0)
    expect(existsSync(keyDirOf(leaseId))).toBe(false)
    rmSync(home.dir, { recursive: true, force: true })
  })

  it("crabbox run --provider hetzner shows the server's status while it boots, and stops asking once the runner is ready", async () => {
    // The server is `initializing` then `starting` for 6 s; its cloud-init (the key that lets crabbox in) lands after 15 s,
    // late enough that a status read sees `running` first even when a loaded machine stretches the SSH retries.
    const fake = createFakeHetzner({
      addressFor: () => host.address,
      bootMs: 6_000,
      onCreate: (s) => void setTimeout(() => void bootstrapFrom(s.user_data), 15_000),
    })
    const server = await serveFake(fake.handler)
    served.push(server)
    const home = cliHome()
    const child = spawnCli(['run', '--provider', 'hetzner', '--class', 'standard', '--', 'sh', '-c', 'echo started; sleep 6; echo ended'], {
      cwd: repo,
      home,
      // A 30 m idle timeout beats every 10 m: no expiry-label touch (which reads the server too) while the command runs.
      env: { ...baseEnv(), HCLOUD_TOKEN: fake.token, CRABBOX_HETZNER_API_URL: `${server.url}/v1`, CRABBOX_IDLE_TIMEOUT: '30m' },
    })
    const run = collectOutput(child)
    const reads = () => fake.count('GET', /^\/servers\/\d+$/)
    const atStart = await until('the command to start', () => run.stdout().includes('started') && reads(), 90_000)
    const atEnd = await until('the command to end', () => run.stdout().includes('ended') && reads(), 30_000)
    expect(await run.done, run.stderr()).toBe(0)
    // The provider's own words, in the plain log beside the SSH step, as they changed.
    const lines = run.stderr().split('\n')
    const first = lines.findIndex((l) => /waiting for SSH on .* · hetzner: initializing$/.test(l))
    const running = lines.findIndex((l) => /waiting for SSH on .* · hetzner: running$/.test(l))
    expect(first, run.stderr()).toBeGreaterThanOrEqual(0)
    expect(running, run.stderr()).toBeGreaterThan(first)
    expect(run.stderr()).not.toMatch(/✓ leased .* · hetzner/)
    // Polled while waiting (a few reads), and not once more after the runner was ready.
    expect(atStart).toBeGreaterThanOrEqual(3)
    expect(atEnd).toBe(atStart)
    expect(fake.servers.size).toBe(0)
    rmSync(home.dir, { recursive: true, force: true })
  })

  it("a direct-mode hetzner run keeps moving the server's expiry label forward while the command runs", async () => {
    const fake = createFakeHetzner({ addressFor: () => host.address, onCreate: (s) => bootstrapFrom(s.user_data) })
    const server = await serveFake(fake.handler)
    served.push(server)
    const home = cliHome()
    // A 15 s idle timeout makes the touch cadence 5 s (idle ÷ 3, at least 5 s); the command outlives two beats.
    const result = await runCli(['run', '--provider', 'hetzner', '--class', 'standard', '--', 'sleep', '12'], {
      cwd: repo,
      home,
      env: { ...baseEnv(), HCLOUD_TOKEN: fake.token, CRABBOX_HETZNER_API_URL: `${server.url}/v1`, CRABBOX_IDLE_TIMEOUT: '15s' },
      timeoutMs: 90_000,
    })
    expect(result.code, result.stderr).toBe(0)
    const create = fake.calls.find((c) => c.method === 'POST' && c.path === '/servers')!
    const created = create.body!.labels as Record<string, string>
    const touches = fake.calls
      .filter((c) => c.method === 'PUT' && /^\/servers\/\d+$/.test(c.path) && c.body?.labels)
      .map((c) => Number((c.body!.labels as Record<string, string>).expires_at))
    // One touch when the lease exists, then one per 5 s while `sleep 12` runs.
    expect(touches.length).toBeGreaterThanOrEqual(3)
    expect(touches.every((at, i) => i === 0 || at >= touches[i - 1])).toBe(true)
    // The last touch is well past the label the server was created with: cleanup would spare it.
    expect(touches.at(-1)! - Number(created.expires_at)).toBeGreaterThanOrEqual(8)
    expect(fake.servers.size).toBe(0)
    rmSync(home.dir, { recursive: true, force: true })
  })

  it('crabbox run --provider aws pins the host key from the serial console before connecting, and refuses a runner whose key differs', async () => {
    const scanned = execFileSync('ssh-keyscan', ['-p', '2222', '-t', 'ed25519', host.address], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .trim()
      .split(/\s+/)
    const realKey = `${scanned[1]} ${scanned[2]}`
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-otherkey-'))
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')])
    const otherKey = readFileSync(join(dir, 'k.pub'), 'utf8').trim().split(/\s+/).slice(0, 2).join(' ')
    rmSync(dir, { recursive: true, force: true })

    let consoleKey = realKey
    const fake = createFakeEc2({
      addressFor: () => host.address,
      onLaunch: (i) => bootstrapFrom(i.userData),
      consoleFor: () => `cloud-init[900]: ok\ncrabbox-host-key: ${consoleKey}\n`,
    })
    const server = await serveFake(fake.handler)
    served.push(server)
    const env = {
      ...baseEnv(),
      AWS_ACCESS_KEY_ID: fake.accessKeyId,
      AWS_SECRET_ACCESS_KEY: fake.secretAccessKey,
      CRABBOX_AWS_ENDPOINT: server.url,
      CRABBOX_AWS_CONSOLE_WAIT_MS: '5000',
    }

    const home = cliHome()
    const ok = await runCli(['run', '--provider', 'aws', '--class', 'standard', '--', 'cat', 'hello.txt'], {
      cwd: repo,
      home,
      env,
      timeoutMs: 90_000,
    })
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toContain('hello from the checkout')
    const launch = fake.calls.find((c) => c.action === 'RunInstances')!
    expect(launch.params).toMatchObject({
      InstanceType: 'c7a.8xlarge',
      'InstanceMarketOptions.MarketType': 'spot',
      'BlockDeviceMapping.1.Ebs.VolumeSize': '400',
    })
    expect(fake.live()).toHaveLength(0)
    expect(fake.keyPairs.size).toBe(0)

    consoleKey = otherKey
    const bad = await runCli(['run', '--provider', 'aws', '--class', 'standard', '--', 'cat', 'hello.txt'], {
      cwd: repo,
      home,
      env,
      timeoutMs: 90_000,
    })
    expect(bad.code).toBe(7)
    expect(bad.stderr).toMatch(/host key for .* changed/)
    expect(bad.stdout).not.toContain('hello from the checkout')
    expect(fake.live()).toHaveLength(0)
    rmSync(home.dir, { recursive: true, force: true })
  })
})
