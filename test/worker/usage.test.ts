import { describe, expect, it } from 'vitest'
import { adminCaller, api, createLease, inFleet, nobody, shared } from './broker-support.js'

interface SeedLease {
  id: string
  owner: string
  org: string
  provider?: string
  serverType?: string
  state?: string
  createdAt: string
  endedAt?: string
  expiresAt?: string
  estimatedHourlyUSD?: number
  maxEstimatedUSD?: number
}

/**
 * Writes lease rows the way the lease module stores them (record JSON plus indexed columns),
 * as leases of shared-token owners (`claimed` = 1): the callers below use the shared token.
 */
function seed(leases: SeedLease[]): Promise<void> {
  return inFleet(({ storage }) => {
    for (const lease of leases) {
      const record = {
        slug: lease.id,
        provider: 'aws',
        serverType: 't3.small',
        state: 'released',
        expiresAt: lease.endedAt ?? lease.createdAt,
        ...lease,
      }
      storage.run(
        `INSERT INTO leases (id, owner, org, state, slug, provider, created_at, expires_at, month, reserved_usd, record, claimed)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
        record.id,
        record.owner,
        record.org,
        record.state,
        record.slug,
        record.provider,
        record.createdAt,
        record.expiresAt,
        record.createdAt.slice(0, 7),
        record.maxEstimatedUSD ?? 0,
        JSON.stringify(record),
      )
    }
  })
}

const usage = async (who: Parameters<typeof api>[0], query = '') => {
  const result = await api(who, 'GET', `/v1/usage${query}`)
  if (result.status !== 200) throw new Error(`usage: ${result.status} ${result.text}`)
  return result.body
}

describe('usage', () => {
  it('sums runtime, estimate and reservation per lease for the month, grouped and sorted', async () => {
    await seed([
      // The reference example: one hour at $2/h with a $3 reservation.
      {
        id: 'cbx_a00000000001',
        owner: 'ann@example.com',
        org: 'umbrella',
        createdAt: '2025-03-01T01:00:00.000Z',
        endedAt: '2025-03-01T02:00:00.000Z',
        estimatedHourlyUSD: 2,
        maxEstimatedUSD: 3,
      },
      // No reservation: the estimate counts (90 min at $1/h), on another server type.
      {
        id: 'cbx_a00000000002',
        owner: 'ann@example.com',
        org: 'umbrella',
        serverType: 'c7a.large',
        createdAt: '2025-03-02T00:00:00.500Z',
        endedAt: '2025-03-02T01:30:01.499Z',
        estimatedHourlyUSD: 1,
      },
      {
        id: 'cbx_a00000000003',
        owner: 'bob@example.com',
        org: 'umbrella',
        provider: 'hetzner',
        serverType: 'cx53',
        createdAt: '2025-03-03T00:00:00.000Z',
        endedAt: '2025-03-03T10:00:00.000Z',
        estimatedHourlyUSD: 0.08,
        maxEstimatedUSD: 0.8,
      },
      // Other month and other org: outside the selections below.
      {
        id: 'cbx_a00000000004',
        owner: 'ann@example.com',
        org: 'umbrella',
        createdAt: '2025-04-01T00:00:00.000Z',
        endedAt: '2025-04-01T01:00:00.000Z',
        estimatedHourlyUSD: 5,
        maxEstimatedUSD: 5,
      },
      {
        id: 'cbx_a00000000005',
        owner: 'cy@example.com',
        org: 'acme',
        createdAt: '2025-03-05T00:00:00.000Z',
        endedAt: '2025-03-05T01:00:00.000Z',
        estimatedHourlyUSD: 1,
        maxEstimatedUSD: 1,
      },
    ])
    const ann = await usage(shared('ann@example.com', 'umbrella'), '?month=2025-03')
    expect(ann.usage).toMatchObject({
      month: '2025-03',
      scope: 'user',
      owner: 'ann@example.com',
      leases: 2,
      activeLeases: 0,
      runtimeSeconds: 3600 + 5400,
      estimatedUSD: 3.5,
      reservedUSD: 4.5,
    })
    expect(ann.usage.byServerType).toEqual([
      { key: 't3.small', leases: 1, activeLeases: 0, runtimeSeconds: 3600, estimatedUSD: 2, reservedUSD: 3 },
      { key: 'c7a.large', leases: 1, activeLeases: 0, runtimeSeconds: 5400, estimatedUSD: 1.5, reservedUSD: 1.5 },
    ])
    expect(ann.usage.byOwner).toEqual([
      { key: 'ann@example.com', leases: 2, activeLeases: 0, runtimeSeconds: 9000, estimatedUSD: 3.5, reservedUSD: 4.5 },
    ])
    expect(ann.limits).toEqual({
      maxActiveLeases: expect.any(Number),
      maxActiveLeasesPerOwner: expect.any(Number),
      maxActiveLeasesPerOrg: expect.any(Number),
      maxMonthlyUSD: expect.any(Number),
      maxMonthlyUSDPerOwner: expect.any(Number),
      maxMonthlyUSDPerOrg: expect.any(Number),
    })

    const org = await usage(adminCaller, '?scope=org&org=umbrella&month=2025-03')
    expect(org.usage).toMatchObject({ scope: 'org', org: 'umbrella', leases: 3, reservedUSD: 5.3 })
    expect(org.usage.byOwner.map((g: { key: string }) => g.key)).toEqual(['ann@example.com', 'bob@example.com'])
    expect(org.usage.byProvider.map((g: { key: string; reservedUSD: number }) => [g.key, g.reservedUSD])).toEqual([
      ['aws', 4.5],
      ['hetzner', 0.8],
    ])

    const all = await usage(adminCaller, '?scope=all&month=2025-03')
    expect(all.usage).toMatchObject({ scope: 'all', leases: 4 })
    expect(all.usage).not.toHaveProperty('owner')
    expect(all.usage.byOrg.map((g: { key: string }) => g.key)).toEqual(['umbrella', 'acme'])
    expect((await usage(adminCaller, '?scope=user&owner=bob@example.com&month=2025-03')).usage).toMatchObject({
      owner: 'bob@example.com',
      leases: 1,
      runtimeSeconds: 36_000,
    })
  })

  it('non-admins only ever see their own usage, whatever they ask for', async () => {
    await createLease(shared('friend@example.com'))
    const friend = await usage(shared('friend@example.com'), '?scope=all&owner=peter@example.com&org=elsewhere')
    expect(friend.usage).toMatchObject({ scope: 'user', owner: 'friend@example.com', leases: 1, activeLeases: 1 })
    expect(friend.usage.byOwner.map((g: { key: string }) => g.key)).toEqual(['friend@example.com'])
    expect(friend.usage.month).toBe(new Date().toISOString().slice(0, 7))
  })

  it('counts a live lease as running until now', async () => {
    const lease = await createLease(shared('live@example.com'))
    const { usage: mine } = await usage(shared('live@example.com'))
    expect(mine).toMatchObject({ leases: 1, activeLeases: 1 })
    expect(mine.runtimeSeconds).toBeGreaterThanOrEqual(0)
    expect(mine.byProvider[0].key).toBe(lease.provider)
  })

  it('rejects bad queries and callers without a credential', async () => {
    for (const query of ['?month=2025-13', '?month=March', '?scope=everyone', '?owner=']) {
      const result = await api(adminCaller, 'GET', `/v1/usage${query}`)
      expect({ query, status: result.status }).toEqual({ query, status: 400 })
      expect(result.body).toMatchObject({ error: expect.any(String), message: expect.any(String) })
    }
    expect((await api(nobody, 'GET', '/v1/usage')).status).toBe(401)
  })
})
