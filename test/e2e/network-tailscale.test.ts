import { rmSync, writeFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { createFakeHetzner, serveFake, type FakeHetzner, type ServedFake } from '../support/fake-hetzner.js'
import { createFakeTailscale, type FakeTailscale } from '../support/fake-tailscale.js'
import { bootstrapFrom as bootstrapWith, runnerWorkRoot } from '../support/cloud-runner.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'

/**
 * A brokered Tailscale lease end to end, with the built CLI and the broker
 * under workerd: the broker mints the one-off key at the fake Tailscale API,
 * the fake Hetzner's "server" is a real sshd host, and the test plays
 * cloud-init from the user data: it runs the rendered join script against a
 * stub `tailscale` that reports a second address of that host, in its own
 * namespace, as the tailnet address. `--network auto` then reaches the runner
 * there, and falls back to the provider address once that address is cut.
 * The key must appear in no output, record or run event.
 */

const JOIN = '/usr/local/bin/crabbox-tailscale-up'

describe('Tailscale leases and --network', () => {
  let host: SshHost
  let tailnetAddress: string
  let hetzner: FakeHetzner
  let tailscale: FakeTailscale
  const served: ServedFake[] = []
  let broker: BrokerHandle
  let home: CliHome
  let workRoot: string
  /** Everything the CLI and the broker said, to search for the key at the end. */
  const seen: string[] = []
  const joins: Array<{ code: number; stdout: string; stderr: string }> = []

  /** What cloud-init would do: authorize the key, install crabbox-ready and the join script, run the join. */
  async function bootstrapFrom(userData: string): Promise<void> {
    await bootstrapWith(host, userData, ['/usr/local/bin/', '/run/crabbox/'])
    // A failed join (or exit-node check) is left for crabbox-ready to report, as on a real runner.
    joins.push(await host.run(JOIN))
  }

  beforeAll(async () => {
    host = await sshHost({ ports: [2222, 22], name: 'tailnet', privateDirs: ['/usr/local/bin', '/var/lib/crabbox', '/run/crabbox'] })
    // 10.251.a.b → 100.80.a.b: in the tailnet range, one per host.
    tailnetAddress = host.address.replace(/^10\.251\./, '100.80.')
    await host.addAddress(tailnetAddress)
    // The stub tailscale: joins if the key file is there (never printing it), reports the second address.
    writeFileSync(
      host.path('/usr/local/bin/tailscale'),
      `#!/bin/sh
case "$1" in
  up) key=$(printf '%s\\n' "$*" | sed -n 's/.*--auth-key=file:\\([^ ]*\\).*/\\1/p'); [ -s "$key" ] ;;
  ip) echo ${tailnetAddress} ;;
  status) echo '{"Self":{"DNSName":"crabbox-runner.tailnet.invalid."}}' ;;
esac
`,
      { mode: 0o755 },
    )
    hetzner = createFakeHetzner({ addressFor: () => host.address, onCreate: (server) => bootstrapFrom(server.user_data) })
    tailscale = createFakeTailscale({ allowedTags: ['tag:crabbox', 'tag:ci'] })
    served.push(await serveFake(hetzner.handler), await serveFake(tailscale.handler))
    broker = await startBroker({
      env: {
        CRABBOX_SHARED_TOKEN: 'e2e-shared',
        CRABBOX_HETZNER_TOKEN: hetzner.token,
        CRABBOX_HETZNER_API_URL: `${served[0].url}/v1`,
        CRABBOX_TAILSCALE_CLIENT_ID: tailscale.clientId,
        CRABBOX_TAILSCALE_CLIENT_SECRET: tailscale.clientSecret,
        CRABBOX_TAILSCALE_TAILNET: tailscale.tailnet,
        CRABBOX_TAILSCALE_TAGS: 'tag:crabbox,tag:ci',
        CRABBOX_TAILSCALE_API_URL: served[1].url,
      },
    })
    home = cliHome()
    workRoot = runnerWorkRoot('crabbox-tailnet-work-')
  })

  afterAll(async () => {
    await broker?.stop()
    for (const s of served) await s.close()
    await host?.stop()
    if (home) rmSync(home.dir, { recursive: true, force: true })
    if (workRoot) rmSync(workRoot, { recursive: true, force: true })
  })

  const env = () => ({
    CRABBOX_COORDINATOR: broker.url,
    CRABBOX_COORDINATOR_TOKEN: 'e2e-shared',
    CRABBOX_OWNER: 'tailnet@example.com',
    CRABBOX_NO_AGENT: '1',
    NODE_EXTRA_CA_CERTS: undefined,
  })
  const cli = async (args: string[]) => {
    const result = await runCli(args, { home, env: env(), timeoutMs: 120_000 })
    seen.push(result.stdout, result.stderr)
    return result
  }
  const api = async (path: string) => {
    const response = await fetch(broker.url + path, {
      headers: { authorization: 'Bearer e2e-shared', 'x-crabbox-owner': 'tailnet@example.com' },
    })
    const text = await response.text()
    seen.push(text)
    return JSON.parse(text)
  }

  it('joins with a minted key, reaches the runner on its tailnet address, and falls back when that is cut', async () => {
    const warm = await cli([
      'warmup',
      '--provider',
      'hetzner',
      '--class',
      'standard',
      '--tailscale',
      '--tailscale-tags',
      'tag:ci',
      '--network',
      'auto',
      '--work-root',
      workRoot,
      '--timing-json',
      '--json',
    ])
    expect(warm.code, warm.stderr).toBe(0)
    expect(joins.at(-1)?.code).toBe(0)
    const lease = JSON.parse(warm.stdout) as { id: string; host: string; network: string; networkReason: string }
    // The FQDN does not resolve here; the IPv4 answers.
    expect(lease).toMatchObject({ host: tailnetAddress, network: 'tailscale', networkReason: 'tailnet_ipv4' })
    const timing = JSON.parse(
      warm.stderr
        .trim()
        .split('\n')
        .findLast((line) => line.startsWith('{'))!,
    )
    expect(timing).toMatchObject({ network: 'tailscale', networkHost: tailnetAddress, networkReason: 'tailnet_ipv4' })

    // One key, minted for this lease with its tags, single-use, ephemeral, pre-authorized, short-lived.
    expect(tailscale.minted).toHaveLength(1)
    expect(tailscale.minted[0]).toMatchObject({
      tags: ['tag:ci'],
      reusable: false,
      ephemeral: true,
      preauthorized: true,
      expirySeconds: 600,
    })
    const { lease: record } = await api(`/v1/leases/${lease.id}`)
    expect(record.tailscale).toMatchObject({ enabled: true, state: 'ready', ipv4: tailnetAddress, tags: ['tag:ci'] })

    const inspect = await cli(['inspect', lease.id, '--json', '--network', 'auto'])
    expect(inspect.code, inspect.stderr).toBe(0)
    expect(JSON.parse(inspect.stdout)).toMatchObject({
      network: 'tailscale',
      networkReason: 'tailnet_ipv4',
      sshHost: tailnetAddress,
      tailscale: { ipv4: tailnetAddress, state: 'ready' },
    })

    // The command really runs over the tailnet address (sshd sees it as the server address).
    const viaTailnet = await cli(['run', '--id', lease.id, '--network', 'auto', '--no-sync', '--', 'sh', '-c', 'echo "$SSH_CONNECTION"'])
    expect(viaTailnet.code, viaTailnet.stderr).toBe(0)
    expect(viaTailnet.stdout.trim().split(' ')[2]).toBe(tailnetAddress)
    expect(viaTailnet.stderr).not.toContain('network fallback')

    // Cut the tailnet address: auto falls back with one line, tailscale refuses, public never tried it.
    await host.removeAddress(tailnetAddress)
    const fallback = await cli([
      'run',
      '--id',
      lease.id,
      '--network',
      'auto',
      '--no-sync',
      '--timing-json',
      '--',
      'sh',
      '-c',
      'echo "$SSH_CONNECTION"',
    ])
    expect(fallback.code, fallback.stderr).toBe(0)
    expect(fallback.stdout.trim().split(' ')[2]).toBe(host.address)
    expect(fallback.stderr.split('\n').filter((line) => line.includes('network fallback tailscale_unreachable'))).toHaveLength(1)
    const fellBack = JSON.parse(
      fallback.stderr
        .trim()
        .split('\n')
        .findLast((line) => line.startsWith('{'))!,
    )
    expect(fellBack).toMatchObject({ network: 'public', networkHost: host.address, networkReason: 'tailscale_unreachable' })
    const status = await cli(['status', lease.id, '--json', '--network', 'auto'])
    expect(JSON.parse(status.stdout)).toMatchObject({ network: 'public', networkReason: 'tailscale_unreachable', host: host.address })
    const strict = await cli(['status', lease.id, '--network', 'tailscale'])
    expect(strict.code).toBe(7)
    expect(strict.stderr).toContain(
      `no reachable tailnet address (tried crabbox-runner.tailnet.invalid, ${tailnetAddress}, ${record.tailscale.hostname})`,
    )
    const plain = await cli(['status', lease.id, '--json', '--network', 'public'])
    expect(JSON.parse(plain.stdout)).toMatchObject({ network: 'public', networkReason: 'requested' })

    // Run events of both runs, then release.
    const { runs } = await api(`/v1/runs?leaseID=${lease.id}`)
    expect(runs.length).toBeGreaterThanOrEqual(2)
    for (const run of runs) await api(`/v1/runs/${run.id}/events`)
    expect((await cli(['stop', lease.id])).code).toBe(0)

    // The key is nowhere: CLI output, lease record, inspect, status, run events.
    const key = tailscale.minted[0].key
    expect(seen.length).toBeGreaterThan(10)
    for (const text of seen) expect(text).not.toContain(key)
    // It did reach the runner, in the user data only: the join script read it from its file, then deleted it.
    const create = hetzner.calls.find((c) => c.method === 'POST' && c.path === '/servers')!
    expect(String(create.body!.user_data)).toContain(key)
    expect((await host.run('ls -A /run/crabbox')).stdout.trim()).toBe('')
  })

  it('fails the lease clearly when the exit node does not carry its traffic', async () => {
    // The stub's status shows no exit node in use: the bootstrap's check must not let the lease egress from the provider.
    const warm = await cli([
      'warmup',
      '--provider',
      'hetzner',
      '--class',
      'standard',
      '--tailscale',
      '--tailscale-exit-node',
      'mac-studio.tailnet.invalid',
      '--work-root',
      workRoot,
    ])
    expect(joins.at(-1)?.code).toBe(1)
    expect(warm.code).toBe(5)
    expect(warm.stderr).toContain('exit node mac-studio.tailnet.invalid is not active: no exit node is selected')
    // The lease was released, and its key went nowhere else either.
    expect((await api('/v1/leases?state=active')).leases).toEqual([])
    for (const minted of tailscale.minted) for (const text of seen) expect(text).not.toContain(minted.key)
  })
})
