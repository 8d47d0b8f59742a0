import { SELF } from 'cloudflare:test'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createFakeGithub, type FakeGithub } from '../support/fake-github.js'
import { restoreSettings, withSettings } from './broker-support.js'

/** Portal sign-in through GitHub (the fake), bound to the browser that started it. */

let github: FakeGithub

beforeEach(() => {
  github = createFakeGithub({
    users: [
      { login: 'portaluser', emails: [{ email: 'portaluser@example.com', primary: true, verified: true }], orgs: { openclaw: 'active' } },
    ],
  })
  const realFetch = globalThis.fetch
  // The Fleet object shares this isolate, so its calls to GitHub reach the fake.
  vi.stubGlobal('fetch', (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init)
    const host = new URL(request.url).hostname
    return host === 'github.test' || host === 'api.github.test' ? github.handler(request) : realFetch(input, init)
  })
})
afterEach(async () => {
  vi.unstubAllGlobals()
  await restoreSettings()
})

/** Starts a portal sign-in: the GitHub callback URL after approval, and the browser's login cookie. */
async function startSignIn(returnTo: string): Promise<{ callback: string; binding: string }> {
  const login = await SELF.fetch(`https://broker.test/portal/login?returnTo=${encodeURIComponent(returnTo)}`, { redirect: 'manual' })
  expect(login.status).toBe(302)
  const binding = /^crabbox_login=([0-9a-f]{32});/.exec(login.headers.get('set-cookie') ?? '')![1]!
  github.approveAs('portaluser')
  const atGithub = await github.handler(new Request(login.headers.get('location')!))
  expect(atGithub.status).toBe(302)
  return { callback: atGithub.headers.get('location')!, binding }
}

describe('portal sign-in', () => {
  it('signs in through GitHub and lands on returnTo with a session that opens pages', async () => {
    const { callback, binding } = await startSignIn('/portal/usage')
    const done = await SELF.fetch(callback, { headers: { cookie: `crabbox_login=${binding}` }, redirect: 'manual' })
    expect(done.status).toBe(302)
    expect(done.headers.get('location')).toBe('/portal/usage')
    const session = /^crabbox_session=([^;]+);/.exec(done.headers.get('set-cookie') ?? '')![1]!
    expect(decodeURIComponent(session)).toMatch(/^cbxu_/)
    const usage = await SELF.fetch('https://broker.test/portal/usage', {
      headers: { cookie: `crabbox_session=${session}` },
      redirect: 'manual',
    })
    expect(usage.status).toBe(200)
    expect(await usage.text()).toContain('portaluser')
  })

  it('refuses to finish a sign-in in a browser that did not start it (login CSRF)', async () => {
    const { callback, binding } = await startSignIn('/portal')
    for (const cookie of [undefined, 'crabbox_login=0123456789abcdef0123456789abcdef']) {
      const refused = await SELF.fetch(callback, { headers: cookie ? { cookie } : {}, redirect: 'manual' })
      expect(refused.status).toBe(403)
      expect(refused.headers.get('set-cookie')).toBeNull()
      expect(await refused.text()).toContain('started in another browser')
    }
    // The browser that started it still can.
    const done = await SELF.fetch(callback, { headers: { cookie: `crabbox_login=${binding}` }, redirect: 'manual' })
    expect(done.status).toBe(302)
  })

  it('keeps an unsafe returnTo out of the redirect after sign-in', async () => {
    const { callback, binding } = await startSignIn('https://evil.example/portal')
    const done = await SELF.fetch(callback, { headers: { cookie: `crabbox_login=${binding}` }, redirect: 'manual' })
    expect(done.headers.get('location')).toBe('/portal')
  })

  it('answers an HTML panel when GitHub sign-in is not configured', async () => {
    await withSettings({ CRABBOX_GITHUB_CLIENT_ID: undefined })
    const login = await SELF.fetch('https://broker.test/portal/login', { redirect: 'manual' })
    expect(login.status).toBe(503)
    expect(login.headers.get('content-type')).toBe('text/html; charset=UTF-8')
    const text = await login.text()
    expect(text).toContain('Sign-in unavailable')
    expect(text).toContain('CRABBOX_GITHUB_CLIENT_ID')
  })
})
