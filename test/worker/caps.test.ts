import { afterEach, describe, expect, it } from 'vitest'
import { api, createLease, inFleet, leaseId, restoreSettings, shared, withSettings } from './broker-support.js'

afterEach(restoreSettings)

const pool = (n: number, prefix = 'cap') =>
  JSON.stringify(Array.from({ length: n }, (_, i) => ({ name: `${prefix}-${i}`, host: `198.51.100.${(i % 250) + 1}`, port: 22 })))
const body = () => ({ provider: 'static', sshPublicKey: 'ssh-ed25519 AAAA caps', leaseID: leaseId() })

describe('caps', () => {
  it('200 concurrent creates under a cap of 10 give exactly 10 leases', async () => {
    await withSettings({ CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER: '10', CRABBOX_STATIC_POOL: pool(250) })
    const who = shared('racer@example.com', 'race')
    const results = await Promise.all(Array.from({ length: 200 }, () => api(who, 'POST', '/v1/leases', body())))
    const statuses = results.map((r) => r.status)
    expect(statuses.filter((s) => s === 201)).toHaveLength(10)
    expect(statuses.filter((s) => s === 429)).toHaveLength(190)
    const refused = results.find((r) => r.status === 429)!
    expect(refused.body).toEqual({ error: 'cost_limit_exceeded', message: 'active lease limit for owner exceeded: 11/10' })
    const listed = await api(who, 'GET', '/v1/leases?limit=500')
    expect(listed.body.leases).toHaveLength(10)
    // Ten distinct hosts: no host handed out twice.
    expect(new Set(listed.body.leases.map((l: { host: string; cloudID: string }) => l.cloudID)).size).toBe(10)
    // Releasing one makes room for exactly one more.
    await api(who, 'POST', `/v1/leases/${listed.body.leases[0].id}/release`)
    const again = await Promise.all(Array.from({ length: 5 }, () => api(who, 'POST', '/v1/leases', body())))
    expect(again.filter((r) => r.status === 201)).toHaveLength(1)
  })

  it('applies global and per-org active caps, counting every live lease', async () => {
    const live = await inFleet(
      (deps) => deps.storage.one<{ n: number }>("SELECT count(*) AS n FROM leases WHERE state IN ('provisioning','active')")!.n,
    )
    // The per-credential cap defaults to the per-org cap (1): off here, where one shared token plays several orgs.
    await withSettings({
      CRABBOX_MAX_ACTIVE_LEASES: String(live + 2),
      CRABBOX_MAX_ACTIVE_LEASES_PER_ORG: '1',
      CRABBOX_MAX_ACTIVE_LEASES_PER_CREDENTIAL: '0',
    })
    await createLease(shared('a@example.com', 'org-one'))
    const sameOrg = await api(shared('b@example.com', 'org-one'), 'POST', '/v1/leases', body())
    expect(sameOrg.status).toBe(429)
    expect(sameOrg.body.message).toBe('active lease limit for org exceeded: 2/1')
    await createLease(shared('c@example.com', 'org-two'))
    const fleet = await api(shared('d@example.com', 'org-three'), 'POST', '/v1/leases', body())
    expect(fleet.status).toBe(429)
    expect(fleet.body.message).toBe(`active lease limit exceeded: ${live + 3}/${live + 2}`)
  })

  it('reserves the worst-case TTL cost against monthly budgets', async () => {
    // 2 USD/h for 5400 s reserves 3 USD per lease.
    await withSettings({ CRABBOX_COST_RATES_JSON: JSON.stringify({ 'static:ssh': '2' }), CRABBOX_MAX_MONTHLY_USD_PER_OWNER: '10' })
    const who = shared('spender@example.com', 'budget')
    const first = await createLease(who)
    expect(first).toMatchObject({ estimatedHourlyUSD: 2, maxEstimatedUSD: 3 })
    await createLease(who)
    await createLease(who)
    const fourth = await api(who, 'POST', '/v1/leases', body())
    expect(fourth.status).toBe(429)
    expect(fourth.body).toEqual({ error: 'cost_limit_exceeded', message: 'monthly budget for owner exceeded: $12.00/$10.00' })
    // Releasing does not give the reservation back within the month.
    await api(who, 'POST', `/v1/leases/${first.id}/release`)
    expect((await api(who, 'POST', '/v1/leases', body())).status).toBe(429)
    // A shorter lease fits: 1800 s reserves 1 USD.
    expect((await api(who, 'POST', '/v1/leases', { ...body(), ttlSeconds: 1800 })).status).toBe(201)
  })

  it('answers 503 no_capacity when the static pool is full, and keeps nothing of the refused lease', async () => {
    await withSettings({ CRABBOX_STATIC_POOL: pool(1, 'solo') })
    const who = shared('full@example.com', 'full')
    const first = await createLease(who)
    const refusedBody = body()
    const refused = await api(who, 'POST', '/v1/leases', refusedBody)
    expect(refused.status).toBe(503)
    expect(refused.body.error).toBe('no_capacity')
    expect((await api(who, 'GET', `/v1/leases/${refusedBody.leaseID}`)).status).toBe(404)
    await api(who, 'POST', `/v1/leases/${first.id}/release`)
    expect((await api(who, 'POST', '/v1/leases', body())).status).toBe(201)
  })
})
