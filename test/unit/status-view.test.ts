import { describe, expect, it } from 'vitest'
import type { LeaseRecord } from '../../src/protocol/leases.js'
import type { Lease } from '../../src/providers/types.js'
import { statusView } from '../../src/services/status-view.js'
import { durationText, inspectLines, statusLine } from '../../src/ui/status.js'

const now = new Date('2026-05-05T01:10:00.000Z')

const record: LeaseRecord = {
  id: 'cbx_0123456789ab',
  slug: 'blue-prawn',
  provider: 'aws',
  target: 'linux',
  cloudID: 'i-0abc',
  region: 'eu-west-1',
  owner: 'dev@example.com',
  org: 'acme',
  profile: 'default',
  class: 'beast',
  serverType: 'c7a.48xlarge',
  market: 'spot',
  serverID: 0,
  host: '203.0.113.7',
  sshUser: 'crabbox',
  sshPort: '2222',
  sshFallbackPorts: ['22'],
  workRoot: '/work/crabbox',
  keep: true,
  ttlSeconds: 5400,
  idleTimeoutSeconds: 1800,
  state: 'active',
  createdAt: '2026-05-05T01:00:00.000Z',
  updatedAt: '2026-05-05T01:05:48.000Z',
  lastTouchedAt: '2026-05-05T01:05:48.000Z',
  expiresAt: '2026-05-05T01:35:48.000Z',
  telemetry: { capturedAt: '2026-05-05T01:05:40.000Z', source: 'ssh-linux', load1: 0.42, memoryPercent: 31 },
  telemetryHistory: [{ capturedAt: '2026-05-05T01:05:40.000Z', source: 'ssh-linux', load1: 0.42, memoryPercent: 31 }],
}

const brokerLease: Lease = {
  id: record.id,
  slug: record.slug,
  provider: record.provider,
  ssh: {
    host: '203.0.113.7',
    port: 2222,
    fallbackPorts: [22],
    user: 'crabbox',
    privateKeyPath: '/home/dev/.config/crabbox/testboxes/cbx_0123456789ab/id_ed25519',
    knownHostsPath: '/home/dev/.config/crabbox/testboxes/cbx_0123456789ab/known_hosts',
  },
  workRoot: '/work/crabbox',
  serverType: 'c7a.48xlarge',
  state: 'active',
  keep: true,
  expiresAt: record.expiresAt,
  idleTimeoutSeconds: 1800,
  details: { record },
}

/** Field → JSON type, as scripts written for crabbox read them. */
const types = (value: object) =>
  Object.fromEntries(
    Object.entries(value).map(([key, field]) => [key, Array.isArray(field) ? 'array' : field === null ? 'null' : typeof field]),
  )

describe('status --json / inspect --json shape', () => {
  it('a broker lease: the field names and types scripts rely on', () => {
    const view = statusView(brokerLease, { ready: true, target: 'linux', now })
    expect(types(view)).toEqual({
      id: 'string',
      slug: 'string',
      provider: 'string',
      target: 'string',
      workroot: 'string',
      state: 'string',
      serverId: 'string',
      serverType: 'string',
      host: 'string',
      network: 'string',
      sshHost: 'string',
      sshUser: 'string',
      sshPort: 'string',
      sshFallbackPorts: 'array',
      sshKey: 'string',
      lastTouchedAt: 'string',
      idleFor: 'string',
      idleTimeout: 'string',
      expiresAt: 'string',
      labels: 'object',
      hasHost: 'boolean',
      ready: 'boolean',
      telemetry: 'object',
      telemetryHistory: 'array',
    })
    expect(view).toMatchObject({
      id: 'cbx_0123456789ab',
      slug: 'blue-prawn',
      provider: 'aws',
      target: 'linux',
      state: 'active',
      serverId: 'i-0abc',
      serverType: 'c7a.48xlarge',
      host: '203.0.113.7',
      network: 'public',
      sshHost: '203.0.113.7',
      sshUser: 'crabbox',
      sshPort: '2222',
      sshFallbackPorts: ['22'],
      sshKey: brokerLease.ssh.privateKeyPath,
      lastTouchedAt: '2026-05-05T01:05:48.000Z',
      idleFor: '4m12s',
      idleTimeout: '30m0s',
      expiresAt: '2026-05-05T01:35:48.000Z',
      hasHost: true,
      ready: true,
      telemetry: { load1: 0.42, memoryPercent: 31 },
    })
    expect(view.telemetryHistory).toHaveLength(1)
    // Labels are all text.
    expect(Object.values(view.labels!).every((value) => typeof value === 'string')).toBe(true)
    expect(view.labels).toMatchObject({
      lease: 'cbx_0123456789ab',
      slug: 'blue-prawn',
      state: 'active',
      keep: 'true',
      target: 'linux',
      owner: 'dev@example.com',
      org: 'acme',
      market: 'spot',
      region: 'eu-west-1',
      idle_timeout_secs: '1800',
      last_touched_at: '2026-05-05T01:05:48.000Z',
    })
    // Survives JSON unchanged (what --json prints).
    expect(JSON.parse(JSON.stringify(view))).toEqual(view)
  })

  it('a Hetzner lease shows its server number; windows leases their mode', () => {
    const hetzner = { ...record, provider: 'hetzner', cloudID: undefined, serverID: 4711, target: 'windows', windowsMode: 'wsl2' }
    const view = statusView({ ...brokerLease, provider: 'hetzner', details: { record: hetzner } }, { ready: false, target: 'linux', now })
    expect(view).toMatchObject({ serverId: '4711', target: 'windows', windowsMode: 'wsl2', ready: false })
    expect(view.labels!.windows_mode).toBe('wsl2')
  })

  it('a direct lease leaves out what only a broker knows; unknown text fields are empty strings, never missing', () => {
    const direct: Lease = {
      id: 'cbx_aaaaaaaaaaaa',
      slug: 'red-crab',
      provider: 'local',
      ssh: { host: '127.0.0.1', port: 40022, fallbackPorts: [], user: 'me', privateKeyPath: '/k', knownHostsPath: '/kh' },
      workRoot: '/tmp/w',
      state: 'active',
      keep: false,
      details: { pid: 1 },
    }
    const view = statusView(direct, { ready: true, target: 'linux', now })
    expect(view).toEqual({
      id: 'cbx_aaaaaaaaaaaa',
      slug: 'red-crab',
      provider: 'local',
      target: 'linux',
      workroot: '/tmp/w',
      state: 'active',
      serverId: '',
      serverType: '',
      host: '127.0.0.1',
      network: 'public',
      sshHost: '127.0.0.1',
      sshUser: 'me',
      sshPort: '40022',
      sshKey: '/k',
      labels: {
        crabbox: 'true',
        lease: 'cbx_aaaaaaaaaaaa',
        slug: 'red-crab',
        provider: 'local',
        state: 'active',
        keep: 'false',
        target: 'linux',
      },
      hasHost: true,
      ready: true,
    })
    expect(statusView({ ...direct, ssh: { ...direct.ssh, host: '' } }, { ready: false, target: 'macos', now })).toMatchObject({
      hasHost: false,
      target: 'macos',
    })
  })
})

describe('status and inspect for people', () => {
  it('durations read like 45s, 30m0s, 1h2m3s', () => {
    expect(durationText(0)).toBe('0s')
    expect(durationText(45_000)).toBe('45s')
    expect(durationText(1_800_000)).toBe('30m0s')
    expect(durationText(3_723_000)).toBe('1h2m3s')
    expect(durationText(-5)).toBe('0s')
  })

  it('status is one line of key=value after the ID', () => {
    const line = statusLine(statusView(brokerLease, { ready: true, target: 'linux', now }))
    expect(line).toBe(
      'cbx_0123456789ab slug=blue-prawn provider=aws target=linux state=active type=c7a.48xlarge host=203.0.113.7 network=public ' +
        'ready=true has_host=true idle_for=4m12s idle_timeout=30m0s expires=2026-05-05T01:35:48.000Z',
    )
  })

  it('inspect prints key=value lines, labels and telemetry included', () => {
    const lines = inspectLines(statusView(brokerLease, { ready: true, target: 'linux', now }))
    expect(lines.every((line) => /^[a-z_.0-9]+=\S*$/.test(line))).toBe(true)
    expect(lines).toContain('id=cbx_0123456789ab')
    expect(lines).toContain('ssh_port=2222')
    expect(lines).toContain('ssh_fallback_ports=22')
    expect(lines).toContain('ready=true')
    expect(lines).toContain('label.owner=dev@example.com')
    expect(lines).toContain('telemetry.load1=0.42')
    expect(lines).toContain('telemetry.memory_percent=31')
    expect(lines).toContain('telemetry_samples=1')
    const spaced = inspectLines({
      ...statusView(brokerLease, { ready: true, target: 'linux', now }),
      sshKey: '/Users/me/Library/Application Support/k',
    })
    expect(spaced).toContain('ssh_key="/Users/me/Library/Application Support/k"')
  })
})
