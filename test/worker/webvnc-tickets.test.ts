import { describe, expect, it } from 'vitest'
import { api, createLease, inFleet, shared } from './broker-support.js'
import { agentUpgrade, desktopLease, ticketFor } from './webvnc-support.js'
import { ORIGIN } from './portal-support.js'
import { SELF } from 'cloudflare:test'

/** WebVNC tickets and the agent socket's refusals: shapes, expiry, one use, wrong lease, 409s. */

const peter = shared('peter@example.com')
const stranger = shared('mallory@example.com', 'elsewhere')

describe('WebVNC tickets', () => {
  it('mints wvnc_<32hex> tickets valid for 120 s', async () => {
    const lease = await desktopLease(peter)
    const before = Date.now()
    const result = await api(peter, 'POST', `/v1/leases/${lease.id}/webvnc/ticket`)
    expect(result.status).toBe(200)
    expect(result.body.ticket).toMatch(/^wvnc_[a-f0-9]{32}$/)
    expect(result.body.leaseID).toBe(lease.id)
    const expires = Date.parse(result.body.expiresAt)
    expect(expires - before).toBeGreaterThanOrEqual(119_000)
    expect(expires - before).toBeLessThanOrEqual(121_000)
    // By slug too; other methods are not a route.
    expect((await api(peter, 'POST', `/v1/leases/${lease.slug}/webvnc/ticket`)).status).toBe(200)
    expect((await api(peter, 'GET', `/v1/leases/${lease.id}/webvnc/ticket`)).status).toBe(404)
  })

  it('answers the exact 409 bodies for leases that cannot have WebVNC', async () => {
    const plain = await createLease(peter)
    expect(await api(peter, 'POST', `/v1/leases/${plain.id}/webvnc/ticket`)).toMatchObject({
      status: 409,
      body: { error: 'webvnc_unavailable', message: 'lease was not created with desktop=true' },
    })
    const hostless = await desktopLease(peter, { desktop: true, host: '' })
    expect((await api(peter, 'POST', `/v1/leases/${hostless.id}/webvnc/ticket`)).body).toEqual({
      error: 'webvnc_unavailable',
      message: 'lease has no reachable host yet',
    })
    const released = await desktopLease(peter)
    expect((await api(peter, 'POST', `/v1/leases/${released.id}/release`, {})).status).toBe(200)
    for (const path of ['ticket', 'reset'])
      expect((await api(peter, 'POST', `/v1/leases/${released.id}/webvnc/${path}`)).body).toEqual({
        error: 'webvnc_unavailable',
        message: 'lease is not active',
      })
    expect((await api(peter, 'GET', `/v1/leases/${released.id}/webvnc/status`)).status).toBe(409)
  })

  it('hides the lease from a stranger (404) on ticket, status and reset', async () => {
    const lease = await desktopLease(peter)
    expect((await api(stranger, 'POST', `/v1/leases/${lease.id}/webvnc/ticket`)).status).toBe(404)
    expect((await api(stranger, 'GET', `/v1/leases/${lease.id}/webvnc/status`)).status).toBe(404)
    expect((await api(stranger, 'POST', `/v1/leases/${lease.id}/webvnc/reset`)).status).toBe(404)
  })
})

describe('the WebVNC agent socket', () => {
  it('answers 426 without an upgrade, with or without a credential', async () => {
    const lease = await desktopLease(peter)
    const plain = await SELF.fetch(`${ORIGIN}/v1/leases/${lease.id}/webvnc/agent`)
    expect(plain.status).toBe(426)
    expect(await plain.json()).toEqual({ error: 'upgrade_required', message: 'WebVNC agent requires a websocket upgrade' })
    expect((await api(peter, 'GET', `/v1/leases/${lease.id}/webvnc/agent`)).status).toBe(426)
  })

  it('answers 401 webvnc_ticket_required without a ticket, or with a malformed, unknown or spent one', async () => {
    const lease = await desktopLease(peter)
    const required = { error: 'webvnc_ticket_required', message: 'valid WebVNC bridge ticket required' }
    for (const ticket of [undefined, 'wvnc_nothex', `wvnc_${'0'.repeat(32)}`, 'test-shared-token']) {
      const response = await agentUpgrade(lease.id, ticket)
      expect(response.status).toBe(401)
      expect(await response.json()).toEqual(required)
    }
    const ticket = await ticketFor(peter, lease.id)
    const first = await agentUpgrade(lease.id, ticket)
    expect(first.status).toBe(101)
    first.webSocket!.accept()
    first.webSocket!.close(1000)
    // One use.
    expect((await agentUpgrade(lease.id, ticket)).status).toBe(401)
  })

  it('takes the ticket from ?ticket= too', async () => {
    const lease = await desktopLease(peter)
    const ticket = await ticketFor(peter, lease.id)
    const response = await SELF.fetch(`${ORIGIN}/v1/leases/${lease.slug}/webvnc/agent?ticket=${ticket}`, {
      headers: { upgrade: 'websocket' },
    })
    expect(response.status).toBe(101)
    response.webSocket!.accept()
    response.webSocket!.close(1000)
  })

  it('answers 404 when the ticket was minted for another lease, and spends it anyway', async () => {
    const mine = await desktopLease(peter)
    const other = await desktopLease(peter)
    const ticket = await ticketFor(peter, mine.id)
    const response = await agentUpgrade(other.id, ticket)
    expect(response.status).toBe(404)
    expect((await agentUpgrade(mine.id, ticket)).status).toBe(401)
  })

  it('refuses an expired ticket (401) and deletes it on that use', async () => {
    const lease = await desktopLease(peter)
    const ticket = await ticketFor(peter, lease.id)
    await inFleet((deps) => deps.storage.run('UPDATE webvnc_tickets SET expires_at = ? WHERE ticket = ?', Date.now() - 1, ticket))
    expect((await agentUpgrade(lease.id, ticket)).status).toBe(401)
    const left = await inFleet((deps) => deps.storage.one('SELECT 1 AS one FROM webvnc_tickets WHERE ticket = ?', ticket))
    expect(left).toBeUndefined()
  })

  it('purges expired tickets when a new one is minted', async () => {
    const lease = await desktopLease(peter)
    const old = await ticketFor(peter, lease.id)
    await inFleet((deps) => deps.storage.run('UPDATE webvnc_tickets SET expires_at = 1 WHERE ticket = ?', old))
    await ticketFor(peter, lease.id)
    const left = await inFleet((deps) => deps.storage.one('SELECT 1 AS one FROM webvnc_tickets WHERE ticket = ?', old))
    expect(left).toBeUndefined()
  })

  it('answers 409 when the lease stopped being usable after the ticket was minted', async () => {
    const lease = await desktopLease(peter)
    const ticket = await ticketFor(peter, lease.id)
    expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`, {})).status).toBe(200)
    const response = await agentUpgrade(lease.id, ticket)
    expect(response.status).toBe(409)
    expect(await response.json()).toEqual({ error: 'webvnc_unavailable', message: 'lease is not active' })
  })
})
