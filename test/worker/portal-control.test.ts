import { SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { workerTestBindings } from './fixtures/bindings.js'
import { browserFor, getPage, ORIGIN, type Browser } from './portal-support.js'
import { callJson, createRun } from './runs-support.js'

/**
 * `/v1/control` with the portal's session cookie: the run page's live stream. Same
 * authorization as the user token as a bearer token; only from the broker's own origin
 * (cross-site WebSocket hijacking); without a credential still 401.
 */

async function upgrade(headers: Record<string, string>) {
  return SELF.fetch(`${ORIGIN}/v1/control`, { headers: { upgrade: 'websocket', ...headers } })
}

/** Opens the socket as `browser` from the portal's origin; returns a reader of its frames. */
async function openAs(browser: Browser) {
  const response = await upgrade({ cookie: browser.cookie, origin: ORIGIN })
  expect(response.status).toBe(101)
  const ws = response.webSocket!
  const frames: any[] = []
  ws.addEventListener('message', (event) => {
    frames.push(JSON.parse(String(event.data)))
  })
  ws.accept()
  const next = async (match: (frame: any) => boolean) => {
    for (let i = 0; i < 100; i++) {
      const at = frames.findIndex(match)
      if (at >= 0) return frames.splice(at, 1)[0]
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`no matching frame; got ${JSON.stringify(frames)}`)
  }
  return { ws, next }
}

const user = (browser: Browser) => ({ kind: 'user' as const, token: browser.token })

describe('control socket with the portal session cookie', () => {
  it('opens from the portal origin and follows the user’s own run, as the bearer token would', async () => {
    const octo = await browserFor('octo@example.com', 'openclaw', 'octo')
    const run = await createRun(user(octo))
    await callJson(user(octo), `/v1/runs/${run.id}/events`, { body: { type: 'stdout', stream: 'stdout', data: 'hello\n' }, status: 201 })
    const socket = await openAs(octo)
    try {
      expect(await socket.next((f) => f.type === 'hello')).toMatchObject({ protocol: 1 })
      socket.ws.send(JSON.stringify({ type: 'subscribe_run', runID: run.id, after: 0 }))
      const backlog = await socket.next((f) => f.type === 'run_events')
      expect(backlog.events.map((e: { type: string }) => e.type)).toEqual(['run.started', 'stdout'])
      await callJson(user(octo), `/v1/runs/${run.id}/events`, { body: { type: 'stdout', stream: 'stdout', data: 'live\n' }, status: 201 })
      const live = await socket.next((f) => f.type === 'run_events')
      expect(live.events).toEqual([expect.objectContaining({ seq: 3, data: 'live\n' })])
    } finally {
      socket.ws.close(1000)
    }
  })

  it('gives another user’s cookie the same not_found the API gives', async () => {
    const octo = await browserFor('octo2@example.com', 'openclaw', 'octo2')
    const stranger = await browserFor('stranger@example.com', 'elsewhere', 'stranger')
    const run = await createRun(user(octo))
    const api = await SELF.fetch(`${ORIGIN}/v1/runs/${run.id}`, { headers: { authorization: `Bearer ${stranger.token}` } })
    expect(api.status).toBe(404)
    const socket = await openAs(stranger)
    try {
      socket.ws.send(JSON.stringify({ type: 'subscribe_run', runID: run.id, after: 0 }))
      expect(await socket.next((f) => f.type === 'error')).toMatchObject({ code: 'not_found' })
    } finally {
      socket.ws.close(1000)
    }
  })

  it('refuses a cookie-authenticated upgrade from another origin, or naming none, with 403', async () => {
    const octo = await browserFor('octo3@example.com', 'openclaw', 'octo3')
    for (const origin of ['https://evil.test', 'http://broker.test', 'https://broker.test:8443', 'null', undefined]) {
      const response = await upgrade({ cookie: octo.cookie, ...(origin === undefined ? {} : { origin }) })
      expect(response.status, String(origin)).toBe(403)
      expect(response.webSocket).toBeNull()
      expect(await response.json()).toMatchObject({ error: 'forbidden' })
    }
  })

  it('answers 401 without a credential, with a cookie that holds no valid user token, and when a bad bearer comes with a good cookie', async () => {
    const octo = await browserFor('octo4@example.com', 'openclaw', 'octo4')
    const cases: Record<string, string>[] = [
      { origin: ORIGIN },
      { origin: ORIGIN, cookie: 'crabbox_session=cbxu_forged.signature' },
      // Only a user token counts in the cookie, never the shared or admin token.
      { origin: ORIGIN, cookie: `crabbox_session=${workerTestBindings.CRABBOX_SHARED_TOKEN}` },
      { origin: ORIGIN, cookie: `crabbox_session=${workerTestBindings.CRABBOX_ADMIN_TOKEN}` },
      { origin: ORIGIN, cookie: octo.cookie, authorization: 'Bearer wrong-token' },
    ]
    for (const headers of cases) {
      const response = await upgrade(headers)
      expect(response.status, JSON.stringify(headers)).toBe(401)
      expect(response.webSocket).toBeNull()
    }
  })
})

describe('the live script', () => {
  it('is served to signed-in pages as JavaScript, and a signed-out request goes to login', async () => {
    const octo = await browserFor('octo5@example.com', 'openclaw', 'octo5')
    const script = await getPage(octo, '/portal/assets/live-run.js')
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(script.headers.get('x-content-type-options')).toBe('nosniff')
    expect(script.text).toContain("'/v1/control'")
    const signedOut = await getPage(undefined, '/portal/assets/live-run.js')
    expect(signedOut.status).toBe(302)
    expect(signedOut.headers.get('location')).toMatch(/^\/portal\/login\?returnTo=/)
  })

  it('is loaded, with the page nonce, by a running run’s page only', async () => {
    const octo = await browserFor('octo6@example.com', 'openclaw', 'octo6')
    const run = await createRun(user(octo))
    await callJson(user(octo), `/v1/runs/${run.id}/events`, { body: { type: 'stdout', stream: 'stdout', data: 'so far\n' }, status: 201 })
    const running = await getPage(octo, `/portal/runs/${run.id}`)
    const nonce = /script-src 'nonce-([^']+)'/.exec(running.headers.get('content-security-policy') ?? '')?.[1]
    expect(nonce).toBeDefined()
    expect(running.text).toContain(`<script nonce="${nonce}" src="/portal/assets/live-run.js" defer=""></script>`)
    expect(running.text).toMatch(/id="run-live"[^>]*data-state="running"/)
    expect(running.text).toMatch(/data-after-seq="2"/)
    expect(running.text).toContain('id="run-live-status"')
    await callJson(user(octo), `/v1/runs/${run.id}/finish`, { body: { exitCode: 0, log: 'so far\n' } })
    const finished = await getPage(octo, `/portal/runs/${run.id}`)
    expect(finished.text).not.toContain('live-run.js')
  })
})
