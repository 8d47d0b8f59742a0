import { runDurableObjectAlarm, SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { api, createLease, fleetStub, inFleet, shared, type Who } from './broker-support.js'
import { ORIGIN } from './portal-support.js'
import { eventually, text, type Peer } from './webvnc-support.js'

/** Mediated egress: tickets, sessions, status, and the relay between a host and a client socket. */

const peter = shared('peter@example.com')
const stranger = shared('mallory@example.com', 'elsewhere')

const ticket = async (who: Who, ref: string, body: Record<string, unknown>) => {
  const result = await api(who, 'POST', `/v1/leases/${ref}/egress/ticket`, body)
  expect(result.status).toBe(200)
  return result.body
}
const status = (ref: string, who: Who = peter) => api(who, 'GET', `/v1/leases/${ref}/egress/status`)

function upgrade(ref: string, role: string, ticketValue?: string): Promise<Response> {
  return SELF.fetch(`${ORIGIN}/v1/leases/${ref}/egress/${role}`, {
    headers: { upgrade: 'websocket', ...(ticketValue ? { authorization: `Bearer ${ticketValue}` } : {}) },
  })
}

function peer(ws: WebSocket): Peer {
  const frames: (string | ArrayBuffer)[] = []
  let resolveClosed!: (value: { code: number; reason: string }) => void
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (resolveClosed = resolve))
  ;(ws as unknown as { binaryType: string }).binaryType = 'arraybuffer'
  ws.addEventListener('message', (event) => frames.push(event.data as string | ArrayBuffer))
  ws.addEventListener('close', (event) => resolveClosed({ code: event.code, reason: event.reason }))
  ws.accept()
  return {
    ws,
    id: '',
    frames,
    closed,
    async received(n) {
      for (let i = 0; i < 800 && frames.length < n; i++) await new Promise((resolve) => setTimeout(resolve, 5))
      return frames
    },
  }
}

async function connect(who: Who, ref: string, role: 'host' | 'client', sessionID: string): Promise<Peer> {
  const minted = await ticket(who, ref, { role, sessionID })
  const response = await upgrade(ref, role, minted.ticket)
  expect(response.status).toBe(101)
  return peer(response.webSocket!)
}

const connected = (ref: string, host: boolean, client: boolean) =>
  eventually(
    () => status(ref).then((r) => r.body),
    (body) => body.hostConnected === host && body.clientConnected === client,
  )

describe('egress tickets', () => {
  it('mints host and client tickets for a session, reads sessionId too, and refuses other roles', async () => {
    const lease = await createLease(peter)
    const bad = await api(peter, 'POST', `/v1/leases/${lease.id}/egress/ticket`, { role: 'viewer' })
    expect(bad.status).toBe(400)
    expect(bad.body).toEqual({ error: 'invalid_egress_role', message: 'egress ticket role must be host or client' })
    const host = await ticket(peter, lease.id, {
      role: 'host',
      sessionID: 'egress_test123',
      profile: 'discord',
      allow: [' Discord.com ', '*.discordcdn.com', 'discord.com'],
    })
    expect(host.ticket).toMatch(/^egress_[a-f0-9]{32}$/)
    expect(host).toMatchObject({ leaseID: lease.id, role: 'host', sessionID: 'egress_test123' })
    expect(Date.parse(host.expiresAt) - Date.now()).toBeGreaterThan(100_000)
    const client = await ticket(peter, lease.id, { role: 'client', sessionId: 'egress_camel123', allow: ['discord.com'] })
    expect(client).toMatchObject({ role: 'client', sessionID: 'egress_camel123' })
    const now = await status(lease.id)
    expect(now.status).toBe(200)
    expect(now.body).toMatchObject({
      leaseID: lease.id,
      slug: lease.slug,
      sessionID: 'egress_camel123',
      allow: ['discord.com'],
      hostConnected: false,
      clientConnected: false,
    })
  })

  it('reports no session as empty values, and keeps the lease hidden from others (404)', async () => {
    const lease = await createLease(peter)
    expect((await status(lease.id)).body).toEqual({
      leaseID: lease.id,
      slug: lease.slug,
      sessionID: '',
      profile: '',
      allow: [],
      hostConnected: false,
      clientConnected: false,
      createdAt: '',
      updatedAt: '',
    })
    expect((await status(lease.id, stranger)).status).toBe(404)
    const hidden = await api(stranger, 'POST', `/v1/leases/${lease.id}/egress/ticket`, { role: 'host' })
    expect(hidden.status).toBe(404)
    expect(hidden.body.error).toBe('not_found')
  })

  it('answers 426 without an upgrade, 401 without a ticket, with a spent one, or one for the other role', async () => {
    const lease = await createLease(peter)
    const plain = await SELF.fetch(`${ORIGIN}/v1/leases/${lease.id}/egress/host`)
    expect(plain.status).toBe(426)
    expect(await plain.json()).toEqual({ error: 'upgrade_required', message: 'egress bridge requires a websocket upgrade' })
    const missing = await upgrade(lease.id, 'host')
    expect(missing.status).toBe(401)
    expect(await missing.json()).toEqual({ error: 'egress_ticket_required', message: 'valid egress bridge ticket required' })
    const clientTicket = await ticket(peter, lease.id, { role: 'client', sessionID: 'egress_roles1' })
    expect((await upgrade(lease.id, 'host', clientTicket.ticket)).status).toBe(401)
    // Spent by the refused attempt: one use, whatever came of it.
    expect((await upgrade(lease.id, 'client', clientTicket.ticket)).status).toBe(401)
  })

  it('refuses a released lease with 409 egress_unavailable', async () => {
    const lease = await createLease(peter)
    expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`)).status).toBe(200)
    const refused = await api(peter, 'POST', `/v1/leases/${lease.id}/egress/ticket`, { role: 'host' })
    expect(refused.status).toBe(409)
    expect(refused.body).toEqual({ error: 'egress_unavailable', message: 'lease is not active' })
  })
})

describe('the egress relay', () => {
  it('forwards frames both ways between the host and client of a session, and status shows both', async () => {
    const lease = await createLease(peter)
    const host = await connect(peter, lease.id, 'host', 'egress_pair1')
    const client = await connect(peter, lease.id, 'client', 'egress_pair1')
    expect((await connected(lease.id, true, true)).sessionID).toBe('egress_pair1')
    const open = JSON.stringify({ type: 'open', id: '1', host: 'example.com', port: 443 })
    client.ws.send(open)
    expect(text((await host.received(1))[0])).toBe(open)
    const ok = JSON.stringify({ type: 'open_ok', id: '1' })
    host.ws.send(ok)
    expect(text((await client.received(1))[0])).toBe(ok)
  })

  it('closes the peer (1011) when one side leaves', async () => {
    const lease = await createLease(peter)
    const host = await connect(peter, lease.id, 'host', 'egress_gone1')
    const client = await connect(peter, lease.id, 'client', 'egress_gone1')
    await connected(lease.id, true, true)
    host.ws.close(1000, 'bye')
    expect(await client.closed).toEqual({ code: 1011, reason: 'egress host disconnected' })
    expect(await connected(lease.id, false, false)).toMatchObject({ hostConnected: false, clientConnected: false })
  })

  it('lets the newest session win: its sockets close the older session (1012)', async () => {
    const lease = await createLease(peter)
    const oldHost = await connect(peter, lease.id, 'host', 'egress_old1')
    await connected(lease.id, true, false)
    const newHost = await connect(peter, lease.id, 'host', 'egress_new1')
    expect(await oldHost.closed).toEqual({ code: 1012, reason: 'replaced by a newer egress session' })
    const now = await connected(lease.id, true, false)
    expect(now.sessionID).toBe('egress_new1')
    const again = await connect(peter, lease.id, 'host', 'egress_new1')
    expect(await newHost.closed).toEqual({ code: 1012, reason: 'replaced by a newer egress socket' })
    again.ws.close(1000, 'done')
  })

  it('closes every egress socket when the lease is released', async () => {
    const lease = await createLease(peter)
    const host = await connect(peter, lease.id, 'host', 'egress_rel1')
    const client = await connect(peter, lease.id, 'client', 'egress_rel1')
    await connected(lease.id, true, true)
    expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`)).status).toBe(200)
    expect(await host.closed).toEqual({ code: 1000, reason: 'lease released' })
    expect(await client.closed).toEqual({ code: 1000, reason: 'lease released' })
  })

  it('keeps the newest session current when an older session asks for a ticket again', async () => {
    const lease = await createLease(peter)
    await ticket(peter, lease.id, { role: 'host', sessionID: 'egress_first1', allow: ['a.test'] })
    await ticket(peter, lease.id, { role: 'host', sessionID: 'egress_second1', allow: ['b.test'] })
    await ticket(peter, lease.id, { role: 'client', sessionID: 'egress_first1' })
    expect((await status(lease.id)).body).toMatchObject({ sessionID: 'egress_second1', allow: ['b.test'] })
  })

  it('closes the egress sockets of a lease that expires', async () => {
    const lease = await createLease(peter)
    const host = await connect(peter, lease.id, 'host', 'egress_exp1')
    const client = await connect(peter, lease.id, 'client', 'egress_exp1')
    await connected(lease.id, true, true)
    await inFleet(async (deps, state) => {
      const past = new Date(Date.now() - 1000).toISOString()
      deps.storage.run("UPDATE leases SET expires_at = ?, record = json_set(record, '$.expiresAt', ?) WHERE id = ?", past, past, lease.id)
      await state.storage.setAlarm(Date.now() + 3_600_000)
    })
    expect(await runDurableObjectAlarm(fleetStub())).toBe(true)
    expect(await host.closed).toEqual({ code: 1000, reason: 'lease released' })
    expect(await client.closed).toEqual({ code: 1000, reason: 'lease released' })
  })
})
