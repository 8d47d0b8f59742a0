import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { CrabboxError } from '../../src/errors.js'
import type { Lease } from '../../src/providers/types.js'
import { chooseNetwork, tailnetCandidates, type PortProbe } from '../../src/services/network.js'
import { leaseAsk, missingCapabilities } from '../../src/services/lease-request.js'
import { parseTailscaleState } from '../../src/services/tailscale-refresh.js'
import { renderTailscaleHostname } from '../../src/protocol/tailscale.js'

/** `--network auto|tailscale|public`, the Tailscale config keys and flags, and what the runner reports. */

const lease = (tailscale?: Record<string, unknown>): Lease => ({
  id: 'cbx_0123456789ab',
  slug: 'blue-lobster',
  provider: 'hetzner',
  ssh: { host: '203.0.113.7', port: 2222, fallbackPorts: [22], user: 'crabbox', privateKeyPath: '/k', knownHostsPath: '/h' },
  workRoot: '/work/crabbox',
  state: 'active',
  keep: false,
  details: { record: { id: 'cbx_0123456789ab', ...(tailscale ? { tailscale } : {}) } },
})

const ready = {
  enabled: true,
  state: 'ready',
  fqdn: 'crabbox-blue-lobster.example.ts.net',
  ipv4: '100.64.0.10',
  hostname: 'crabbox-blue-lobster',
}
const answers =
  (...hosts: string[]): PortProbe =>
  async (host) =>
    hosts.includes(host)
const info = () => {
  const lines: string[] = []
  return { lines, progress: { info: (line: string) => void lines.push(line) } }
}

describe('choosing the network', () => {
  it('public uses the provider address without probing anything', async () => {
    const out = info()
    const probe: PortProbe = async () => expect.unreachable('no probe for public')
    expect(await chooseNetwork(lease(ready), 'public', out.progress, probe)).toEqual({
      network: 'public',
      host: '203.0.113.7',
      reason: 'requested',
    })
  })

  it('tries FQDN, then IPv4, then hostname', async () => {
    expect(tailnetCandidates(lease(ready)).map((c) => c.kind)).toEqual(['fqdn', 'ipv4', 'hostname'])
    const out = info()
    expect(await chooseNetwork(lease(ready), 'auto', out.progress, answers(ready.fqdn, ready.ipv4))).toMatchObject({
      network: 'tailscale',
      host: ready.fqdn,
      reason: 'tailnet_fqdn',
    })
    expect(await chooseNetwork(lease(ready), 'tailscale', out.progress, answers(ready.ipv4))).toMatchObject({
      host: ready.ipv4,
      reason: 'tailnet_ipv4',
    })
    expect(await chooseNetwork(lease(ready), 'auto', out.progress, answers(ready.hostname))).toMatchObject({ reason: 'tailnet_hostname' })
    expect(out.lines).toEqual([])
  })

  it('auto falls back with one line when no tailnet address answers', async () => {
    const out = info()
    expect(await chooseNetwork(lease(ready), 'auto', out.progress, answers())).toEqual({
      network: 'public',
      host: '203.0.113.7',
      reason: 'tailscale_unreachable',
    })
    expect(out.lines).toEqual(['network fallback tailscale_unreachable'])
    // A lease without Tailscale is simply public, with no fallback line.
    const plain = info()
    expect(await chooseNetwork(lease(), 'auto', plain.progress, answers())).toMatchObject({
      network: 'public',
      reason: 'no_tailnet_address',
    })
    expect(plain.lines).toEqual([])
  })

  it('tailscale fails when no tailnet address answers, and for a failed or absent join', async () => {
    const out = info()
    const refused = (l: Lease) => chooseNetwork(l, 'tailscale', out.progress, answers())
    await expect(refused(lease(ready))).rejects.toThrow(
      /no reachable tailnet address \(tried crabbox-blue-lobster\.example\.ts\.net, 100\.64\.0\.10, crabbox-blue-lobster\)/,
    )
    await expect(refused(lease())).rejects.toThrow(/has no tailnet address/)
    await expect(refused(lease({ ...ready, state: 'failed' }))).rejects.toBeInstanceOf(CrabboxError)
  })
})

describe('Tailscale settings', () => {
  const load = (flags: Record<string, unknown>, env: Record<string, string> = {}) =>
    loadConfig({ cwd: '/', env: { CRABBOX_CONFIG: '/nonexistent/crabbox.yaml', ...env }, flags })

  it('maps the flags and variables onto tailscale.*, and sends them to the broker only when enabled', async () => {
    const { config } = await load({
      tailscale: true,
      'tailscale-tags': 'tag:ci,TAG:Crabbox',
      'tailscale-hostname-template': 'ci-{slug}',
      'tailscale-exit-node': 'mac-studio.tailnet.ts.net',
      'tailscale-exit-node-allow-lan-access': true,
    })
    expect(config.tailscale).toMatchObject({
      enabled: true,
      tags: ['tag:ci', 'tag:crabbox'],
      hostnameTemplate: 'ci-{slug}',
      authKeyEnv: 'CRABBOX_TAILSCALE_AUTH_KEY',
      exitNode: 'mac-studio.tailnet.ts.net',
      exitNodeAllowLanAccess: true,
    })
    expect(leaseAsk(config, 'hetzner')).toMatchObject({
      tailscale: true,
      tailscaleTags: ['tag:ci', 'tag:crabbox'],
      tailscaleHostname: 'ci-{slug}',
      tailscaleExitNode: 'mac-studio.tailnet.ts.net',
      tailscaleExitNodeAllowLanAccess: true,
    })
    const env = (await load({}, { CRABBOX_TAILSCALE: '1', CRABBOX_TAILSCALE_AUTH_KEY_ENV: 'MY_KEY', CRABBOX_TAILSCALE_TAGS: 'tag:ci' }))
      .config
    expect(env.tailscale).toMatchObject({ enabled: true, authKeyEnv: 'MY_KEY', tags: ['tag:ci'] })
    expect(leaseAsk(env, 'hetzner')).toMatchObject({ tailscale: true, tailscaleTags: ['tag:ci'] })
    const off = (await load({})).config
    expect(leaseAsk(off, 'hetzner')).not.toHaveProperty('tailscale')
    expect(missingCapabilities(config, { tailscale: undefined } as never)).toEqual(['tailscale'])
  })

  it('refuses bad tags and LAN access without an exit node', async () => {
    await expect(load({ 'tailscale-tags': 'prod' })).rejects.toThrow(/--tailscale-tags/)
    await expect(load({ 'tailscale-exit-node-allow-lan-access': true })).rejects.toThrow(/needs an exit node/)
  })
})

describe('what the runner reports', () => {
  it('parses the state files into a metadata update, keeping the error only when failed', () => {
    expect(parseTailscaleState('ipv4=100.64.0.10\nfqdn=a.example.ts.net\nhostname=a\nexit-node=\nstate=ready\nerror=\n')).toEqual({
      enabled: true,
      ipv4: '100.64.0.10',
      fqdn: 'a.example.ts.net',
      hostname: 'a',
      state: 'ready',
    })
    expect(parseTailscaleState('ipv4=\nstate=failed\nerror=exit node x is not active: the exit node is offline\n')).toEqual({
      enabled: true,
      state: 'failed',
      error: 'exit node x is not active: the exit node is offline',
    })
  })

  it('renders hostnames as DNS labels', () => {
    const ids = { id: 'cbx_0123456789ab', slug: 'blue-lobster', provider: 'aws' }
    expect(renderTailscaleHostname('', ids)).toBe('crabbox-blue-lobster')
    expect(renderTailscaleHostname('CI__{provider}/{id}', ids)).toBe('ci-aws-cbx-0123456789ab')
    expect(renderTailscaleHostname(`${'x'.repeat(70)}-{slug}`, ids)).toHaveLength(63)
  })
})
