import { describe, expect, it } from 'vitest'
import { defaultSlug } from '../../src/protocol/ids.js'
import { adminCaller, api, createLease, inFleet, leaseId, shared } from './broker-support.js'

const key = 'ssh-ed25519 AAAAC3NzaTest test'

describe('lease create', () => {
  it('creates a static-pool lease with reference defaults, clamps and a normalized slug', async () => {
    const id = leaseId()
    const created = await api(shared('create@example.com'), 'POST', '/v1/leases', {
      leaseID: id,
      slug: 'Blue Lobster!',
      provider: 'static',
      ttlSeconds: 999_999,
      idleTimeoutSeconds: -5,
      keep: true,
      sshPublicKey: key,
    })
    expect(created.status).toBe(201)
    const lease = created.body.lease
    expect(lease).toMatchObject({
      id,
      slug: 'blue-lobster',
      provider: 'static',
      state: 'active',
      owner: 'create@example.com',
      org: 'openclaw',
      keep: true,
    })
    expect(lease.ttlSeconds).toBe(86_400)
    expect(lease.idleTimeoutSeconds).toBe(1_800)
    expect(lease.host).toMatch(/^192\.0\.2\.\d+$/)
    expect(Date.parse(lease.expiresAt) - Date.parse(lease.lastTouchedAt)).toBe(1_800_000)
    expect(lease).not.toHaveProperty('sshPublicKey')
  })

  it('derives the slug from the lease ID and mints an ID when the client sends none', async () => {
    const minted = await api(shared('mint@example.com'), 'POST', '/v1/leases', {
      provider: 'static',
      sshPublicKey: key,
      leaseID: 'not-an-id',
    })
    expect(minted.status).toBe(201)
    expect(minted.body.lease.id).toMatch(/^cbx_[a-f0-9]{12}$/)
    expect(minted.body.lease.slug).toBe(defaultSlug(minted.body.lease.id))
    expect(defaultSlug('cbx_000000000001')).toBe('tidal-lobster')
    expect(defaultSlug('cbx_abcdef123456')).toBe('blue-prawn')
    expect(defaultSlug('cbx_deadbeefcafe')).toBe('silver-crab')
  })

  it('suffixes a slug already used by a live lease of the same owner', async () => {
    const who = shared('slugs@example.com')
    const first = await createLease(who, { slug: 'twin' })
    const second = await createLease(who, { slug: 'twin' })
    expect(first.slug).toBe('twin')
    expect(second.slug).toMatch(/^twin-[0-9a-f]{4}$/)
    // Another owner may use the same slug.
    expect((await createLease(shared('other-slugs@example.com'), { slug: 'twin' })).slug).toBe('twin')
  })

  it('is idempotent on the client-chosen lease ID: a retried create returns the same lease and machine', async () => {
    const who = shared('retry@example.com')
    const id = leaseId()
    const body = { leaseID: id, provider: 'static', sshPublicKey: key }
    const [a, b] = await Promise.all([api(who, 'POST', '/v1/leases', body), api(who, 'POST', '/v1/leases', body)])
    const c = await api(who, 'POST', '/v1/leases', body)
    expect([a.status, b.status].sort()).toEqual([200, 201])
    expect(c.status).toBe(200)
    for (const r of [a, b, c])
      expect(r.body.lease).toMatchObject({ id, host: a.body.lease.host, cloudID: a.body.lease.cloudID, state: 'active' })
    const claims = await inFleet((deps) =>
      deps.storage.all<{ n: number }>('SELECT count(*) AS n FROM static_claims WHERE lease_id = ?', id),
    )
    expect(claims[0].n).toBe(1)
    // Someone else reusing the ID gets what a missing lease gets (404, was 409), not the lease.
    const stolen = await api(shared('thief@example.com'), 'POST', '/v1/leases', body)
    expect(stolen.status).toBe(404)
    expect(stolen.body.error).toBe('not_found')
    expect(stolen.text).not.toContain(a.body.lease.host)
  })

  it('a retried create finishes a create that an evicted object left provisioning, adopting its machine', async () => {
    const who = shared('orphan@example.com')
    const lease = await createLease(who)
    // As if the object died after the provider made the machine but before the lease was committed.
    await inFleet((deps) => {
      deps.storage.run(
        "UPDATE leases SET state = 'provisioning', machine = NULL, record = json_set(record, '$.state', 'provisioning', '$.host', '') WHERE id = ?",
        lease.id,
      )
    })
    const retried = await api(who, 'POST', '/v1/leases', { leaseID: lease.id, provider: 'static', sshPublicKey: key })
    expect(retried.status).toBe(200)
    expect(retried.body.lease).toMatchObject({ id: lease.id, state: 'active', host: lease.host, cloudID: lease.cloudID })
    const claims = await inFleet((deps) => deps.storage.all('SELECT 1 FROM static_claims WHERE lease_id = ?', lease.id))
    expect(claims).toHaveLength(1)
  })

  it('rejects bad input with a 4xx that names the problem', async () => {
    const who = shared('bad@example.com')
    const cases: [unknown, number, string, RegExp][] = [
      [{ provider: 'static' }, 400, 'invalid_request', /sshPublicKey: is required/],
      [{ sshPublicKey: '   ' }, 400, 'invalid_request', /sshPublicKey is required/],
      [{ sshPublicKey: key, ttlSeconds: 'soon' }, 400, 'invalid_request', /ttlSeconds/],
      [{ sshPublicKey: key, keep: 'yes' }, 400, 'invalid_request', /keep/],
      [{ sshPublicKey: key, sshFallbackPorts: ['22', 'ssh'] }, 400, 'invalid_request', /sshFallbackPorts\.1/],
      [{ sshPublicKey: key, provider: 'gcp' }, 400, 'unsupported_provider', /gcp/],
      [{ sshPublicKey: key, provider: 'static', target: 'plan9' }, 400, 'unsupported_target', /plan9/],
      ['{"sshPublicKey":', 400, 'invalid_json', /not valid JSON/],
      ['', 400, 'invalid_json', /required/],
      ['[1,2]', 400, 'invalid_json', /JSON object/],
      [{ sshPublicKey: 'x'.repeat(70_000) }, 413, 'payload_too_large', /larger than/],
    ]
    for (const [body, status, error, message] of cases) {
      const result = await api(who, 'POST', '/v1/leases', body)
      expect({ body, status: result.status, error: result.body?.error }).toEqual({ body, status, error })
      expect(result.body.message).toMatch(message)
    }
  })

  it('answers 413 at the edge for bodies over the edge limit', async () => {
    const result = await api(shared('big@example.com'), 'POST', '/v1/leases', 'x'.repeat(17 * 1024 * 1024))
    expect(result.status).toBe(413)
    expect(result.body.error).toBe('payload_too_large')
  })
})

describe('lease read, list, heartbeat, release', () => {
  it('finds a lease by ID and by slug', async () => {
    const who = shared('reader@example.com')
    const lease = await createLease(who, { slug: 'Reader Box' })
    expect((await api(who, 'GET', `/v1/leases/${lease.id}`)).body.lease.id).toBe(lease.id)
    expect((await api(who, 'GET', '/v1/leases/reader-box')).body.lease.id).toBe(lease.id)
    expect((await api(who, 'GET', '/v1/leases/READER%20BOX')).body.lease.id).toBe(lease.id)
    // Trailing slashes are ignored, like the reference.
    expect((await api(who, 'GET', `/v1/leases/${lease.id}/`)).body.lease.id).toBe(lease.id)
    const missing = await api(who, 'GET', '/v1/leases/cbx_ffffffffffff')
    expect(missing.status).toBe(404)
    expect(missing.body.error).toBe('not_found')
  })

  it('rejects an over-long lease reference on every lease route', async () => {
    const who = shared('reader@example.com')
    const ref = 'a'.repeat(200)
    const routes: [string, string, unknown?][] = [
      ['GET', `/v1/leases/${ref}`],
      ['POST', `/v1/leases/${ref}/heartbeat`, {}],
      ['POST', `/v1/leases/${ref}/release`, {}],
      ['GET', `/v1/leases/${ref}/share`],
      ['PUT', `/v1/leases/${ref}/share`, { users: {} }],
      ['DELETE', `/v1/leases/${ref}/share`],
    ]
    for (const [method, path, body] of routes) {
      const result = await api(who, method, path, body)
      expect({ method, path: path.slice(0, 30), status: result.status, error: result.body.error }).toEqual({
        method,
        path: path.slice(0, 30),
        status: 400,
        error: 'invalid_request',
      })
    }
    for (const path of [`/v1/admin/leases/${ref}/release`, `/v1/admin/leases/${ref}/delete`]) {
      expect((await api(adminCaller, 'POST', path)).status).toBe(400)
    }
  })

  it('lists newest first with filters and cursor pagination, never another owner’s leases', async () => {
    const who = shared('lister@example.com', 'listorg')
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await createLease(who)).id)
    await createLease(shared('stranger@example.com', 'listorg'))
    const seen: string[] = []
    let cursor: string | undefined
    do {
      const page = await api(who, 'GET', `/v1/leases?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      expect(page.status).toBe(200)
      expect(page.body.leases.length).toBeLessThanOrEqual(2)
      seen.push(...page.body.leases.map((l: { id: string }) => l.id))
      cursor = page.body.nextCursor
    } while (cursor)
    expect(seen).toEqual([...ids].reverse())
    await api(who, 'POST', `/v1/leases/${ids[0]}/release`)
    const released = await api(who, 'GET', '/v1/leases?state=released')
    expect(released.body.leases.map((l: { id: string }) => l.id)).toEqual([ids[0]])
    const all = await api(adminCaller, 'GET', '/v1/leases?org=listorg&limit=500')
    expect(all.body.leases).toHaveLength(6)
  })

  it('rejects bad list queries', async () => {
    const who = shared('lister@example.com')
    for (const query of ['limit=0', 'limit=abc', 'state=zombie', 'cursor=%%%', 'cursor=bm9wZQ']) {
      const result = await api(who, 'GET', `/v1/leases?${query}`)
      expect({ query, status: result.status }).toEqual({ query, status: 400 })
      expect(result.body.error).toBe('invalid_request')
    }
    expect((await api(who, 'GET', '/v1/leases?limit=100000')).status).toBe(200)
  })

  it('heartbeat extends expiry up to the TTL, updates the idle timeout and keeps bounded telemetry', async () => {
    const who = shared('beat@example.com')
    const lease = await createLease(who, { ttlSeconds: 1200, idleTimeoutSeconds: 360 })
    expect(Date.parse(lease.expiresAt) - Date.parse(lease.lastTouchedAt)).toBe(360_000)
    const beat = await api(who, 'POST', `/v1/leases/${lease.id}/heartbeat`, {
      idleTimeoutSeconds: 2400,
      telemetry: { capturedAt: '2026-05-05T01:02:03Z', source: 'ssh-linux', load1: 0.42, memoryPercent: 150, diskPercent: -1, bogus: 'x' },
    })
    expect(beat.status).toBe(200)
    const next = beat.body.lease
    expect(next.idleTimeoutSeconds).toBe(2400)
    // Capped by createdAt + ttl, not lastTouchedAt + idle.
    expect(next.expiresAt).toBe(new Date(Date.parse(lease.createdAt) + 1_200_000).toISOString())
    expect(next.telemetry).toEqual({ capturedAt: '2026-05-05T01:02:03.000Z', source: 'ssh-linux', load1: 0.42, memoryPercent: 100 })
    for (let i = 0; i < 65; i++) {
      await api(who, 'POST', `/v1/leases/${lease.id}/heartbeat`, {
        telemetry: { capturedAt: new Date(Date.UTC(2026, 5, 1, 0, i)).toISOString(), load1: i },
      })
    }
    const after = (await api(who, 'GET', `/v1/leases/${lease.id}`)).body.lease
    expect(after.telemetryHistory).toHaveLength(60)
    expect(after.telemetryHistory[59].load1).toBe(64)
    // An empty body is a plain touch.
    expect((await api(who, 'POST', `/v1/leases/${lease.id}/heartbeat`)).status).toBe(200)
  })

  it('heartbeat never revives a released or expired lease', async () => {
    const who = shared('dead@example.com')
    const lease = await createLease(who)
    await api(who, 'POST', `/v1/leases/${lease.id}/release`)
    const beat = await api(who, 'POST', `/v1/leases/${lease.id}/heartbeat`, {})
    expect(beat.status).toBe(409)
    expect(beat.body.error).toBe('lease_not_active')
    expect(beat.body.message).toMatch(/released/)
    expect((await api(who, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('released')

    const expiring = await createLease(who)
    // Past its expiry but before the alarm ran: still refused, and recorded as expired.
    await inFleet((deps) => {
      deps.storage.run(
        "UPDATE leases SET expires_at = '2000-01-01T00:00:00.000Z', record = json_set(record, '$.expiresAt', '2000-01-01T00:00:00.000Z') WHERE id = ?",
        expiring.id,
      )
    })
    const late = await api(who, 'POST', `/v1/leases/${expiring.id}/heartbeat`, {})
    expect(late.status).toBe(409)
    expect(late.body.message).toMatch(/expired/)
  })

  it('rejects bad heartbeat bodies', async () => {
    const who = shared('beat@example.com')
    const lease = await createLease(who)
    for (const body of [{ idleTimeoutSeconds: 'long' }, { telemetry: 'fast' }, '{oops']) {
      const result = await api(who, 'POST', `/v1/leases/${lease.id}/heartbeat`, body)
      expect(result.status).toBe(400)
      expect(['invalid_request', 'invalid_json']).toContain(result.body.error)
    }
  })

  it('release frees the static host, is safe to repeat and validates its body', async () => {
    const who = shared('release@example.com')
    const lease = await createLease(who)
    expect((await api(who, 'POST', `/v1/leases/${lease.id}/release`, { delete: 'please' })).status).toBe(400)
    const first = await api(who, 'POST', `/v1/leases/${lease.id}/release`, { delete: true })
    expect(first.status).toBe(200)
    expect(first.body.lease).toMatchObject({ state: 'released' })
    expect(first.body.lease.releasedAt).toBeTruthy()
    const again = await api(who, 'POST', `/v1/leases/${lease.id}/release`)
    expect(again.status).toBe(200)
    expect(again.body.lease.releasedAt).toBe(first.body.lease.releasedAt)
    const claim = await inFleet((deps) => deps.storage.all('SELECT 1 FROM static_claims WHERE lease_id = ?', lease.id))
    expect(claim).toHaveLength(0)
  })
})

describe('lease sharing', () => {
  it('shares with users and the org, and unshares', async () => {
    const owner = shared('sharer@example.com')
    const lease = await createLease(owner)
    const empty = await api(owner, 'GET', `/v1/leases/${lease.id}/share`)
    expect(empty.body).toEqual({ leaseID: lease.id, share: { users: {} } })
    const put = await api(owner, 'PUT', `/v1/leases/${lease.id}/share`, { users: { ' Friend@Example.com ': 'use' } })
    expect(put.body.share).toMatchObject({ users: { 'friend@example.com': 'use' }, updatedBy: 'sharer@example.com' })
    const friendView = await api(shared('friend@example.com'), 'GET', `/v1/leases/${lease.id}`)
    expect(friendView.body.lease.share.users).toEqual({ 'friend@example.com': 'use' })
    await api(owner, 'PUT', `/v1/leases/${lease.id}/share`, { users: { 'friend@example.com': 'use' }, org: 'manage' })
    const orgMate = await api(shared('colleague@example.com'), 'POST', `/v1/leases/${lease.id}/heartbeat`, {})
    expect(orgMate.status).toBe(200)
    const removed = await api(owner, 'DELETE', `/v1/leases/${lease.id}/share`, { user: 'FRIEND@example.com' })
    expect(removed.body.share).toMatchObject({ users: {}, org: 'manage' })
    const cleared = await api(owner, 'DELETE', `/v1/leases/${lease.id}/share`)
    expect(cleared.body).toEqual({ leaseID: lease.id, share: { users: {} } })
    expect((await api(shared('friend@example.com'), 'GET', `/v1/leases/${lease.id}`)).status).toBe(404)
  })

  it('rejects bad share bodies', async () => {
    const owner = shared('sharer@example.com')
    const lease = await createLease(owner)
    for (const body of [{ users: { 'a@b.c': 'admin' } }, { org: 'everything' }, { users: ['a@b.c'] }, 'nope']) {
      const result = await api(owner, 'PUT', `/v1/leases/${lease.id}/share`, body)
      expect({ body, status: result.status }).toEqual({ body, status: 400 })
    }
    expect((await api(owner, 'DELETE', `/v1/leases/${lease.id}/share`, { org: 'yes' })).status).toBe(400)
    expect((await api(owner, 'PATCH', `/v1/leases/${lease.id}/share`, {})).status).toBe(404)
  })
})

describe('admin routes', () => {
  it('lists, releases and deletes any owner’s leases, and shows the pool', async () => {
    const lease = await createLease(shared('customer@example.com'), { keep: true })
    const listed = await api(adminCaller, 'GET', '/v1/admin/leases?owner=customer@example.com')
    expect(listed.body.leases.map((l: { id: string }) => l.id)).toContain(lease.id)
    const pool = await api(adminCaller, 'GET', '/v1/pool?provider=static')
    const mine = pool.body.machines.find((m: { cloudID: string }) => m.cloudID === lease.cloudID)
    expect(mine).toMatchObject({ provider: 'static', status: 'leased', labels: { lease: lease.id } })
    expect((await api(adminCaller, 'GET', '/v1/pool?provider=gcp')).status).toBe(400)
    const deleted = await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
    expect(deleted.body.lease).toMatchObject({ state: 'released', keep: false })
    const released = await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/release`, { delete: true })
    expect(released.status).toBe(200)
    expect((await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/release`, { delete: 1 })).status).toBe(400)
    expect((await api(adminCaller, 'GET', `/v1/admin/leases/${lease.id}/delete`)).status).toBe(404)
    expect((await api(adminCaller, 'GET', '/v1/admin/leases?limit=-1')).status).toBe(400)
  })
})
