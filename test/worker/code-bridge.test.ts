import { SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { api, createLease, headersFor, inFleet, send, shared, type Who } from './broker-support.js'
import { b64, codeAgentUpgrade, codeLease, codeTicket, openCodeAgent, sendToRelay, socket, unb64, until } from './code-support.js'
import { browserFor, getPage, ORIGIN } from './portal-support.js'
import { MAX_CODE_VIEWERS } from '../../worker/bridge/code-relay.js'

/** The code bridge: tickets, the agent socket and its refusals, health, the waiting page, HTTP and WebSocket proxying. */

const peter = shared('peter@example.com')
const stranger = shared('mallory@example.com', 'elsewhere')

const health = (ref: string) => api(peter, 'GET', `/portal/leases/${ref}/code/health`)

describe('code bridge tickets', () => {
  it('mints code_<32hex> tickets valid for 120 s, by ID or slug; other methods are no route', async () => {
    const lease = await codeLease(peter)
    const before = Date.now()
    const result = await api(peter, 'POST', `/v1/leases/${lease.id}/code/ticket`)
    expect(result.status).toBe(200)
    expect(result.body.ticket).toMatch(/^code_[a-f0-9]{32}$/)
    expect(result.body.leaseID).toBe(lease.id)
    const expires = Date.parse(result.body.expiresAt)
    expect(expires - before).toBeGreaterThanOrEqual(119_000)
    expect(expires - before).toBeLessThanOrEqual(121_000)
    expect((await api(peter, 'POST', `/v1/leases/${lease.slug}/code/ticket`)).status).toBe(200)
    expect((await api(peter, 'GET', `/v1/leases/${lease.id}/code/ticket`)).status).toBe(404)
  })

  it('answers the exact 409 bodies for leases that cannot have the code bridge', async () => {
    const unavailable = (message: string) => ({ error: 'code_unavailable', message })
    const plain = await createLease(peter)
    expect(await api(peter, 'POST', `/v1/leases/${plain.id}/code/ticket`)).toMatchObject({
      status: 409,
      body: unavailable('lease was not created with code=true'),
    })
    const windows = await codeLease(peter, { target: 'windows' })
    expect((await api(peter, 'POST', `/v1/leases/${windows.id}/code/ticket`)).body).toEqual(
      unavailable('code is currently available for Linux leases only'),
    )
    const hostless = await codeLease(peter, { host: '' })
    expect((await api(peter, 'POST', `/v1/leases/${hostless.id}/code/ticket`)).body).toEqual(unavailable('lease has no reachable host yet'))
    const released = await codeLease(peter)
    expect((await api(peter, 'POST', `/v1/leases/${released.id}/release`, {})).status).toBe(200)
    expect((await api(peter, 'POST', `/v1/leases/${released.id}/code/ticket`)).body).toEqual(unavailable('lease is not active'))
  })

  it('hides the lease from a stranger (404) on ticket, health and the proxied paths', async () => {
    const lease = await codeLease(peter)
    expect((await api(stranger, 'POST', `/v1/leases/${lease.id}/code/ticket`)).status).toBe(404)
    expect((await api(stranger, 'GET', `/portal/leases/${lease.id}/code/health`)).status).toBe(404)
    expect((await api(stranger, 'GET', `/portal/leases/${lease.id}/code/`)).status).toBe(404)
    expect((await api(stranger, 'POST', `/portal/leases/${lease.id}/code/x`, { a: 1 })).status).toBe(404)
  })
})

describe('the code agent socket', () => {
  it('answers 426 without an upgrade and 401 code_ticket_required without a valid ticket', async () => {
    const lease = await codeLease(peter)
    const plain = await SELF.fetch(`${ORIGIN}/v1/leases/${lease.id}/code/agent`)
    expect(plain.status).toBe(426)
    expect(await plain.json()).toEqual({ error: 'upgrade_required', message: 'code bridge requires a websocket upgrade' })
    const required = { error: 'code_ticket_required', message: 'valid code bridge ticket required' }
    for (const ticket of [undefined, 'code_nothex', `code_${'0'.repeat(32)}`, `wvnc_${'0'.repeat(32)}`, 'test-shared-token']) {
      const response = await codeAgentUpgrade(lease.id, ticket)
      expect(response.status).toBe(401)
      expect(await response.json()).toEqual(required)
    }
    // One use; an expired ticket is refused and spent too.
    const ticket = await codeTicket(peter, lease.id)
    const first = await codeAgentUpgrade(lease.id, ticket)
    expect(first.status).toBe(101)
    first.webSocket!.accept()
    first.webSocket!.close(1000)
    expect((await codeAgentUpgrade(lease.id, ticket)).status).toBe(401)
    const old = await codeTicket(peter, lease.id)
    await inFleet((deps) => deps.storage.run('UPDATE code_tickets SET expires_at = ? WHERE ticket = ?', Date.now() - 1, old))
    expect((await codeAgentUpgrade(lease.id, old)).status).toBe(401)
    expect(await inFleet((deps) => deps.storage.one('SELECT 1 AS one FROM code_tickets WHERE ticket = ?', old))).toBeUndefined()
  })

  it('answers 404 for a ticket of another lease, and 409 when the lease stopped being usable', async () => {
    const mine = await codeLease(peter)
    const other = await codeLease(peter)
    expect((await codeAgentUpgrade(other.id, await codeTicket(peter, mine.id))).status).toBe(404)
    const ticket = await codeTicket(peter, mine.id)
    expect((await api(peter, 'POST', `/v1/leases/${mine.id}/release`, {})).status).toBe(200)
    const response = await codeAgentUpgrade(mine.slug, ticket)
    expect(response.status).toBe(409)
    expect(await response.json()).toEqual({ error: 'code_unavailable', message: 'lease is not active' })
  })

  it('replaces an existing agent: the old one is closed 1012, its browser sockets 1011, its requests fail 502', async () => {
    const lease = await codeLease(peter)
    const first = await openCodeAgent(peter, lease.id)
    const viewer = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/code/stable-/ws`, {
      headers: { upgrade: 'websocket', ...headersFor(peter) },
    })
    expect(viewer.status).toBe(101)
    const browser = socket(viewer.webSocket!, false)
    await first.next((f) => f.type === 'ws_open')
    const pending = api(peter, 'GET', `/portal/leases/${lease.id}/code/slow`)
    await first.next((f) => f.type === 'http')
    const second = await openCodeAgent(peter, lease.id)
    expect(await first.closed).toEqual({ code: 1012, reason: 'replaced by a newer code bridge' })
    expect((await browser.closed).code).toBe(1011)
    expect(await pending).toMatchObject({ status: 502, body: { error: 'code_proxy_error' } })
    expect((await health(lease.id)).body.code).toEqual({ agentConnected: true, pendingRequests: 0 })
    second.ws.close(1000)
    await until(async () => !(await health(lease.id)).body.code.agentConnected)
    expect((await health(lease.id)).body.code.agentConnected).toBe(false)
  })
})

describe('the portal code pages', () => {
  it('answers health JSON and the waiting page (with the bridge command) until the bridge connects', async () => {
    const browser = await browserFor('peter@example.com')
    const owner: Who = { kind: 'user', token: browser.token }
    const lease = await codeLease(owner)
    expect((await api(owner, 'GET', `/portal/leases/${lease.id}/code/health`)).body).toEqual({
      lease: { id: lease.id, slug: lease.slug, state: 'active', code: true },
      code: { agentConnected: false, pendingRequests: 0 },
    })
    const waiting = await getPage(browser, `/portal/leases/${lease.slug}/code/`)
    expect(waiting.status).toBe(200)
    expect(waiting.headers.get('content-type')).toContain('text/html')
    expect(waiting.text).toContain('Waiting for the code bridge')
    expect(waiting.text).toContain(`crabbox code --id ${lease.slug} --open`)
    expect(waiting.text).toContain('/code/health')
    // `…/code` goes to `…/code/`, where the editor's relative URLs work.
    const bare = await getPage(browser, `/portal/leases/${lease.id}/code`)
    expect(bare.status).toBe(302)
    expect(bare.headers.get('location')).toBe(`/portal/leases/${lease.id}/code/`)
    const agent = await openCodeAgent(owner, lease.id)
    expect((await api(owner, 'GET', `/portal/leases/${lease.id}/code/health`)).body.code.agentConnected).toBe(true)
    agent.ws.close(1000)
  })

  it('proxies HTTP through the agent: header allow-list, cookie cut to vscode-tkn, response headers and CSP', async () => {
    const lease = await codeLease(peter)
    const agent = await openCodeAgent(peter, lease.id)
    const answer = SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/code/static/app.html?x=1`, {
      headers: {
        ...headersFor(peter),
        accept: 'text/html',
        'user-agent': 'test-browser',
        'x-custom': 'kept',
        cookie: 'crabbox_session=secret; vscode-tkn=tkn1; other=1',
      },
    })
    const request = await agent.next((f) => f.type === 'http')
    expect(request).toMatchObject({ method: 'GET', path: `/portal/leases/${lease.id}/code/static/app.html?x=1` })
    expect(request.body).toBeUndefined()
    expect(request.headers).toEqual({ accept: 'text/html', 'user-agent': 'test-browser', 'x-custom': 'kept', cookie: 'vscode-tkn=tkn1' })
    agent.ws.send(
      JSON.stringify({
        type: 'http',
        id: request.id,
        status: 200,
        headers: {
          'content-type': 'text/html; charset=utf-8',
          'content-length': '5',
          'content-security-policy': 'default-src *',
          'x-served': 'runner',
        },
        body: b64('hello'),
      }),
    )
    const response = await answer
    expect(response.status).toBe(200)
    expect(await response.text()).toBe('hello')
    expect(response.headers.get('x-served')).toBe('runner')
    expect(response.headers.get('cache-control')).toBe('no-store, no-transform')
    expect(response.headers.get('content-security-policy')).toContain("default-src 'self'")
    expect(response.headers.get('content-security-policy')).not.toContain('default-src *')
    agent.ws.close(1000)
  })

  it('forwards request bodies and streams chunked answers; agent errors become code_proxy_error', async () => {
    const lease = await codeLease(peter)
    const agent = await openCodeAgent(peter, lease.id)
    const posted = send(peter, 'POST', `/portal/leases/${lease.id}/code/api/echo`, { hello: 'runner' })
    const request = await agent.next((f) => f.type === 'http')
    expect(request.method).toBe('POST')
    expect(request.headers['content-type']).toBe('application/json')
    expect(unb64(request.body)).toBe('{"hello":"runner"}')
    agent.ws.send(JSON.stringify({ type: 'http_start', id: request.id, status: 201, headers: { 'content-type': 'application/json' } }))
    const response = await posted
    expect(response.status).toBe(201)
    expect(response.headers.get('content-type')).toBe('application/json')
    // Each piece reaches the browser as it comes (read before the next is sent).
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    agent.ws.send(JSON.stringify({ type: 'http_body', id: request.id, body: b64('{"ok":') }))
    expect(decoder.decode((await reader.read()).value)).toBe('{"ok":')
    agent.ws.send(JSON.stringify({ type: 'http_body', id: request.id, body: b64('true}') }))
    expect(decoder.decode((await reader.read()).value)).toBe('true}')
    agent.ws.send(JSON.stringify({ type: 'http_end', id: request.id }))
    expect((await reader.read()).done).toBe(true)

    const failing = api(peter, 'GET', `/portal/leases/${lease.id}/code/broken`)
    const second = await agent.next((f) => f.type === 'http' && f.id !== request.id)
    agent.ws.send(JSON.stringify({ type: 'http', id: second.id, status: 502, error: 'connect ECONNREFUSED 127.0.0.1:8080' }))
    expect(await failing).toMatchObject({
      status: 502,
      body: { error: 'code_proxy_error', message: 'connect ECONNREFUSED 127.0.0.1:8080' },
    })
    agent.ws.close(1000)
  })

  it('refuses request bodies over 10 MiB with 413 request_too_large', async () => {
    const lease = await codeLease(peter)
    const agent = await openCodeAgent(peter, lease.id)
    const response = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/code/upload`, {
      method: 'POST',
      headers: { ...headersFor(peter), 'content-type': 'application/octet-stream' },
      body: new Uint8Array(10 * 1024 * 1024 + 1),
    })
    expect(response.status).toBe(413)
    expect(await response.json()).toMatchObject({ error: 'request_too_large' })
    expect(agent.frames.filter((f) => f.type === 'http')).toEqual([])
    agent.ws.close(1000)
  })

  it('tunnels browser WebSockets: ws_open, data both ways, chunking above 15 KiB, close', async () => {
    const lease = await codeLease(peter)
    const agent = await openCodeAgent(peter, lease.id)
    const upgrade = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/code/stable-abc?reconnectionToken=1`, {
      headers: { upgrade: 'websocket', ...headersFor(peter), 'sec-websocket-protocol': 'vscode' },
    })
    expect(upgrade.status).toBe(101)
    const browser = socket(upgrade.webSocket!, false)
    const open = await agent.next((f) => f.type === 'ws_open')
    expect(open.path).toBe(`/portal/leases/${lease.id}/code/stable-abc?reconnectionToken=1`)
    expect(open.headers['sec-websocket-protocol']).toBe('vscode')
    browser.ws.send('ping')
    const data = await agent.next((f) => f.type === 'ws_data')
    expect(data).toMatchObject({ id: open.id, frame: 'text' })
    expect(unb64(data.body)).toBe('ping')
    agent.ws.send(JSON.stringify({ type: 'ws_data', id: open.id, frame: 'text', body: b64('pong') }))
    expect(await browser.next((f) => f === 'pong')).toBe('pong')
    // A big binary frame from the browser goes as ws_start/ws_body…/ws_end.
    const big = new Uint8Array(40 * 1024).map((_, i) => i % 251)
    browser.ws.send(big)
    const end = await agent.next((f) => f.type === 'ws_end')
    const start = agent.frames.find((f) => f.type === 'ws_start')
    expect(start).toMatchObject({ id: open.id, frame: 'binary', chunkID: end.chunkID })
    const pieces = agent.frames.filter((f) => f.type === 'ws_body').map((f) => Uint8Array.from(atob(f.body), (c) => c.charCodeAt(0)))
    expect(pieces.length).toBe(3)
    expect(pieces.reduce((n, p) => n + p.byteLength, 0)).toBe(big.byteLength)
    // A chunked frame from the agent arrives whole.
    const chunk = (relay: { chunks: Map<string, { parts: Uint8Array[] }> }) => relay.chunks.get('c1')?.parts.length
    await sendToRelay(agent, lease.id, { type: 'ws_start', id: open.id, chunkID: 'c1', frame: 'binary' }, (relay) => chunk(relay) === 0)
    const body = { type: 'ws_body', id: open.id, chunkID: 'c1', body: b64(new Uint8Array([1, 2, 3])) }
    await sendToRelay(agent, lease.id, body, (relay) => chunk(relay) === 1)
    agent.ws.send(JSON.stringify({ type: 'ws_end', id: open.id, chunkID: 'c1' }))
    const whole = await browser.next((f) => typeof f !== 'string')
    expect([...new Uint8Array(whole)]).toEqual([1, 2, 3])
    agent.ws.send(JSON.stringify({ type: 'ws_close', id: open.id, code: 4000, reason: 'editor closed' }))
    expect(await browser.closed).toEqual({ code: 4000, reason: 'editor closed' })
    agent.ws.close(1000)
  })

  it('tells the agent when the browser closes its socket, and closes browsers (1011) when the agent goes', async () => {
    const lease = await codeLease(peter)
    const agent = await openCodeAgent(peter, lease.id)
    const open = async () => {
      const upgrade = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/code/ws`, {
        headers: { upgrade: 'websocket', ...headersFor(peter) },
      })
      expect(upgrade.status).toBe(101)
      return socket(upgrade.webSocket!, false)
    }
    const one = await open()
    const opened = await agent.next((f) => f.type === 'ws_open')
    one.ws.close(1000, 'tab closed')
    expect(await agent.next((f) => f.type === 'ws_close')).toMatchObject({ id: opened.id, code: 1000 })
    const two = await open()
    await agent.next((f) => f.type === 'ws_open' && f.id !== opened.id)
    agent.ws.close(1000)
    expect(await two.closed).toEqual({ code: 1011, reason: 'code bridge disconnected' })
  })

  it('bounds the browser sockets per lease (429 too_many_sockets)', async () => {
    const lease = await codeLease(peter)
    const agent = await openCodeAgent(peter, lease.id)
    const upgrade = () =>
      SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/code/ws`, { headers: { upgrade: 'websocket', ...headersFor(peter) } })
    const open: WebSocket[] = []
    for (let i = 0; i < MAX_CODE_VIEWERS; i++) {
      const response = await upgrade()
      expect(response.status).toBe(101)
      response.webSocket!.accept()
      open.push(response.webSocket!)
    }
    const refused = await upgrade()
    expect(refused.status).toBe(429)
    expect(await refused.json()).toMatchObject({ error: 'too_many_sockets' })
    for (const ws of open) ws.close(1000)
    agent.ws.close(1000)
  })

  it('takes the session cookie for a socket only from the broker origin', async () => {
    const browser = await browserFor('peter@example.com')
    const owner: Who = { kind: 'user', token: browser.token }
    const lease = await codeLease(owner)
    const agent = await openCodeAgent(owner, lease.id)
    const foreign = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/code/ws`, {
      headers: { upgrade: 'websocket', cookie: browser.cookie, origin: 'https://evil.example' },
    })
    expect(foreign.status).toBe(403)
    const own = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/code/ws`, {
      headers: { upgrade: 'websocket', cookie: browser.cookie, origin: ORIGIN },
    })
    expect(own.status).toBe(101)
    own.webSocket!.accept()
    own.webSocket!.close(1000)
    agent.ws.close(1000)
  })
})
