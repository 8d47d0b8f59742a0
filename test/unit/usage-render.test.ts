import { describe, expect, it } from 'vitest'
import { parseMonth, parsePositiveInt } from '../../src/flags.js'
import type { UsageResponse } from '../../src/protocol/usage.js'
import { renderAdminLeases } from '../../src/ui/admin.js'
import { renderShare } from '../../src/ui/share.js'
import { renderTable } from '../../src/ui/table.js'
import { formatRuntime, formatUSD, renderUsage } from '../../src/ui/usage.js'
import type { LeaseRecord } from '../../src/protocol/leases.js'

const group = (key: string, reservedUSD: number) => ({
  key,
  leases: 2,
  activeLeases: 1,
  runtimeSeconds: 3725,
  estimatedUSD: 0.5,
  reservedUSD,
})

const response = (scope: 'user' | 'org' | 'all', limits: Partial<UsageResponse['limits']> = {}): UsageResponse => ({
  usage: {
    month: '2026-05',
    scope,
    ...(scope === 'user' ? { owner: 'a@example.com' } : scope === 'org' ? { org: 'acme' } : {}),
    leases: 2,
    activeLeases: 1,
    runtimeSeconds: 3725,
    estimatedUSD: 0.5,
    reservedUSD: 12.25,
    byOwner: [group('a@example.com', 12.25)],
    byOrg: [group('acme', 12.25)],
    byProvider: [group('hetzner', 12.25)],
    byServerType: [group('', 12.25)],
  },
  limits: {
    maxActiveLeases: 0,
    maxActiveLeasesPerOwner: 4,
    maxActiveLeasesPerOrg: 0,
    maxMonthlyUSD: 0,
    maxMonthlyUSDPerOwner: 50,
    maxMonthlyUSDPerOrg: 0,
    ...limits,
  },
})

describe('flag parsers', () => {
  it('parseMonth takes YYYY-MM with a real month and names the form otherwise', () => {
    expect(parseMonth('2026-05')).toBe('2026-05')
    expect(parseMonth(' 2026-12 ')).toBe('2026-12')
    for (const bad of ['2026-13', '2026-00', '2026-5', '26-05', 'may', '2026-05-01', ''])
      expect(() => parseMonth(bad), bad).toThrow(/expected a month as YYYY-MM/)
  })

  it('parsePositiveInt takes whole numbers of at least 1', () => {
    expect(parsePositiveInt('1')).toBe(1)
    expect(parsePositiveInt('500')).toBe(500)
    for (const bad of ['0', '-1', '1.5', 'ten', '', '1e3']) expect(() => parsePositiveInt(bad), bad).toThrow(/at least 1/)
  })

  it('bad values are usage errors (exit 2)', () => {
    try {
      parseMonth('nope')
      expect.unreachable()
    } catch (error) {
      expect((error as { oclif?: { exit?: number } }).oclif?.exit).toBe(2)
    }
  })
})

describe('renderTable', () => {
  it('pads columns, right-aligns where asked and leaves no trailing blanks', () => {
    expect(
      renderTable(
        ['NAME', 'N', 'NOTE'],
        [
          ['a', '1', ''],
          ['longer', '10', 'x'],
        ],
        ['left', 'right', 'left'],
      ),
    ).toEqual(['NAME     N  NOTE', 'a        1', 'longer  10  x'])
  })
})

describe('usage rendering', () => {
  it('formats money and runtimes', () => {
    expect(formatUSD(12.5)).toBe('$12.50')
    expect(formatUSD(0)).toBe('$0.00')
    expect([42, 450, 3725, 86_400 + 7200].map(formatRuntime)).toEqual(['42s', '7m30s', '1h02m', '1d2h'])
  })

  it('shows totals, spend against the caps of its own scope, and the groups', () => {
    const text = renderUsage(response('user'))
    const lines = text.split('\n')
    expect(lines[0]).toBe('usage 2026-05 scope=user user=a@example.com')
    expect(lines[1]).toBe('leases=2 active=1 runtime=1h02m estimated=$0.50 reserved=$12.25')
    expect(text).toMatch(/active leases\s+per user\s+1 of 4 \(25%\)/)
    expect(text).toMatch(/monthly spend\s+per user\s+\$12\.25 of \$50\.00 \(25%\)/)
    // Caps of other scopes: off when 0, else the cap alone (this view does not show what counts against it).
    expect(text).toMatch(/monthly spend\s+fleet\s+off/)
    expect(text).toMatch(/PROVIDER\s+LEASES\s+ACTIVE\s+RUNTIME\s+ESTIMATED\s+RESERVED\nhetzner\s+2\s+1\s+1h02m\s+\$0\.50\s+\$12\.25/)
    // An empty group key (no server type) is shown as `-`.
    expect(text).toMatch(/SERVER TYPE[^\n]*\n-\s+2/)
  })

  it('counts fleet-wide usage against the fleet caps', () => {
    const text = renderUsage(response('all', { maxMonthlyUSD: 100, maxMonthlyUSDPerOwner: 0 }))
    expect(text.split('\n')[0]).toBe('usage 2026-05 scope=all')
    expect(text).toMatch(/monthly spend\s+fleet\s+\$12\.25 of \$100\.00 \(12%\)/)
    expect(text).toMatch(/monthly spend\s+per user\s+off/)
    expect(text).toMatch(/active leases\s+per user\s+cap 4/)
    expect(text).toMatch(/active leases\s+fleet\s+1 \(no cap\)/)
  })
})

describe('share and admin rendering', () => {
  it('lists users (sorted) and the org role, or says the lease is not shared', () => {
    expect(renderShare('cbx_1', { users: {} })).toBe('cbx_1 is not shared\n')
    expect(
      renderShare('cbx_1', { users: { 'z@x': 'use', 'a@x': 'manage' }, org: 'use', updatedBy: 'o@x', updatedAt: '2026-05-01T00:00:00Z' }),
    ).toBe('cbx_1 shared (last changed by o@x at 2026-05-01T00:00:00Z)\n  user  a@x  manage\n  user  z@x  use\n  org   use\n')
  })

  it('renders admin leases as a table', () => {
    const lease = {
      id: 'cbx_000000000001',
      slug: 'blue-prawn',
      provider: 'static',
      target: 'linux',
      owner: 'o@example.com',
      org: 'acme',
      host: '10.0.0.2',
      sshUser: 'crabbox',
      sshPort: '22',
      keep: true,
      ttlSeconds: 3600,
      idleTimeoutSeconds: 600,
      state: 'active',
      createdAt: '2026-05-01T00:00:00Z',
      updatedAt: '2026-05-01T00:00:00Z',
      lastTouchedAt: '2026-05-01T00:00:00Z',
      expiresAt: '2026-05-01T01:00:00Z',
    } as LeaseRecord
    expect(renderAdminLeases([]).trim()).toBe('no leases')
    const [header, row] = renderAdminLeases([lease]).trim().split('\n')
    expect(header).toMatch(/^ID\s+SLUG\s+OWNER\s+ORG\s+PROVIDER\s+STATE\s+SSH\s+KEEP\s+EXPIRES$/)
    expect(row.split(/\s+/)).toEqual([
      'cbx_000000000001',
      'blue-prawn',
      'o@example.com',
      'acme',
      'static',
      'active',
      'crabbox@10.0.0.2:22',
      'keep',
      '2026-05-01T01:00:00Z',
    ])
  })
})
