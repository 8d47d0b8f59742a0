import { SELF } from 'cloudflare:test'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { clientAddressKey, githubCallback, sha256Hex, startGithubLogin } from '../../worker/fleet/github.js'
import { ApiError } from '../../src/protocol/errors.js'
import { createFakeGithub, type FakeGithub } from '../support/fake-github.js'
import { confirmFormRequest } from '../support/login-page.js'
import { api, inFleet, nobody } from './broker-support.js'

const SECRET = 'local-poll-secret'
let github: FakeGithub

beforeEach(() => {
  github = createFakeGithub({
    users: [
      {
        login: 'friend',
        name: 'A Friend',
        email: 'public@example.com',
        emails: [
          { email: 'old@example.com', verified: true },
          { email: 'friend@example.com', primary: true, verified: true },
        ],
        orgs: { OpenClaw: 'active' },
        teams: [{ org: 'OpenClaw', slug: 'Maintainers' }],
      },
      { login: 'stranger', emails: [{ email: 'stranger@example.com', primary: true, verified: true }], orgs: { elsewhere: 'active' } },
      { login: 'invitee', orgs: { openclaw: 'pending' } },
      { login: 'quiet', emails: [{ email: 'unverified@example.com', primary: true, verified: false }], orgs: { openclaw: 'active' } },
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
afterEach(() => vi.unstubAllGlobals())

async function start(body?: unknown) {
  return api(nobody, 'POST', '/v1/auth/github/start', body ?? { pollSecretHash: await sha256Hex(SECRET), provider: 'aws' })
}
const poll = (loginID: string, pollSecret = SECRET) => api(nobody, 'POST', '/v1/auth/github/poll', { loginID, pollSecret })

/** Plays the browser: open the authorize URL, follow GitHub's redirect back to the broker. */
async function approveInBrowser(authorizeUrl: string, as: string | { deny: string }): Promise<Response> {
  if (typeof as === 'string') github.approveAs(as)
  else github.denyWith(as.deny)
  const atGithub = await github.handler(new Request(authorizeUrl))
  expect(atGithub.status).toBe(302)
  const location = atGithub.headers.get('location')!
  const page = await SELF.fetch(location)
  // Response.url stays empty for a Response built in the test: remember where the page was.
  Object.defineProperty(page, 'url', { value: location })
  return page
}

/** Plays the user at the confirmation page: types the code the CLI showed and submits the form. */
async function confirmInBrowser(page: Response, userCode: string): Promise<Response> {
  return SELF.fetch(confirmFormRequest(page.url, await page.text(), userCode))
}

describe('GitHub login', () => {
  it('start → browser approval → poll hands over a signed user token once', async () => {
    const started = await start()
    expect(started.status).toBe(200)
    expect(started.body.loginID).toMatch(/^login_[a-f0-9]{32}$/)
    const url = new URL(started.body.url)
    expect(`${url.origin}${url.pathname}`).toBe('https://github.test/login/oauth/authorize')
    expect(url.searchParams.get('client_id')).toBe('fake-client-id')
    expect(url.searchParams.get('redirect_uri')).toBe('https://broker.test/v1/auth/github/callback')
    expect(url.searchParams.get('scope')).toBe('read:user user:email read:org')
    expect(url.searchParams.get('state')).toMatch(/^state_[a-f0-9]{32}$/)
    // Five minutes to approve and confirm (was ten: pending logins are a lock-out surface).
    expect(Date.parse(started.body.expiresAt) - Date.now()).toBeGreaterThan(4 * 60_000)
    expect(Date.parse(started.body.expiresAt) - Date.now()).toBeLessThanOrEqual(5 * 60_000 + 5_000)
    expect(started.body.userCode).toMatch(/^[A-Z0-9]{4}-[A-Z0-9]{4}$/)

    expect((await poll(started.body.loginID)).body).toEqual({ status: 'pending', expiresAt: started.body.expiresAt })
    const page = await approveInBrowser(started.body.url, 'friend')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toContain('text/html')
    // GitHub approved, but the login waits for the code the CLI showed.
    expect((await poll(started.body.loginID)).body).toEqual({ status: 'pending', expiresAt: started.body.expiresAt })
    // Typed as a person might: lower case, a space for the dash.
    const confirmed = await confirmInBrowser(page, started.body.userCode.toLowerCase().replace('-', ' '))
    expect(confirmed.status).toBe(200)
    expect(confirmed.headers.get('content-type')).toContain('text/html')
    expect(await confirmed.text()).toContain('Crabbox login complete')

    const done = await poll(started.body.loginID)
    expect(done.status).toBe(200)
    expect(done.body).toEqual({
      status: 'complete',
      token: expect.stringMatching(/^cbxu_/),
      owner: 'friend@example.com',
      org: 'OpenClaw',
      login: 'friend',
      provider: 'aws',
    })
    expect((await poll(started.body.loginID)).status).toBe(410)

    const who = await api({ kind: 'user', token: done.body.token }, 'GET', '/v1/whoami', undefined, {
      'x-crabbox-owner': 'someone-else@example.com',
    })
    expect(who.body).toMatchObject({ owner: 'friend@example.com', org: 'OpenClaw', auth: 'github', admin: false })
    // Replaying GitHub's callback does nothing once the login is finished.
    const replay = await SELF.fetch(`https://broker.test/v1/auth/github/callback?code=x&state=${url.searchParams.get('state')}`)
    expect(replay.status).toBe(400)
  })

  it('denies users outside the allowed org, and the CLI learns why', async () => {
    for (const [login, reason] of [
      ['stranger', 'GitHub user stranger is not an active member of openclaw.'],
      ['invitee', 'GitHub user invitee is not an active member of openclaw.'],
    ]) {
      const started = await start()
      const page = await approveInBrowser(started.body.url, login!)
      expect(page.status).toBe(403)
      expect(await page.text()).toContain('Crabbox login denied')
      expect(await poll(started.body.loginID)).toMatchObject({ status: 400, body: { status: 'failed', error: reason } })
      expect((await poll(started.body.loginID)).status).toBe(410)
    }
  })

  it('falls back to a noreply address when GitHub has no verified email', async () => {
    const started = await start()
    const page = await approveInBrowser(started.body.url, 'quiet')
    expect(page.status).toBe(200)
    expect((await confirmInBrowser(page, started.body.userCode)).status).toBe(200)
    expect((await poll(started.body.loginID)).body).toMatchObject({
      owner: 'quiet@users.noreply.github.com',
      login: 'quiet',
      org: 'openclaw',
    })
  })

  it('records a refusal in the browser and a GitHub outage as failures', async () => {
    const refused = await start()
    const page = await approveInBrowser(refused.body.url, { deny: 'access_denied' })
    expect(page.status).toBe(400)
    expect(await poll(refused.body.loginID)).toMatchObject({ status: 400, body: { status: 'failed', error: 'access_denied' } })

    const down = await start()
    github = createFakeGithub({ users: [{ login: 'friend', orgs: { openclaw: 'active' } }], failApiWith: 502 })
    const outage = await approveInBrowser(down.body.url, 'friend')
    expect(outage.status).toBe(502)
    expect(await poll(down.body.loginID)).toMatchObject({ status: 400, body: { status: 'failed', error: expect.stringContaining('502') } })
  })

  it('rejects bad input with clear 4xx answers', async () => {
    for (const body of [{}, { pollSecretHash: 'abc' }, { pollSecretHash: 'A'.repeat(64) }, 'nope']) {
      const result = await start(body)
      expect(result.status).toBe(400)
      expect(result.body.error).toBe('invalid_poll_secret_hash')
    }
    for (const body of [{}, { loginID: 'login_x' }, { loginID: 5, pollSecret: 'x' }, '[']) {
      const result = await api(nobody, 'POST', '/v1/auth/github/poll', body)
      expect(result.status).toBe(400)
      expect(result.body.error).toBe('invalid_poll')
    }
    expect((await poll('login_00000000000000000000000000000000')).status).toBe(410)
    const started = await start()
    expect(await poll(started.body.loginID, 'wrong secret')).toMatchObject({ status: 403, body: { error: 'forbidden' } })
    expect((await poll(started.body.loginID)).body.status).toBe('pending')

    const unknown = await SELF.fetch('https://broker.test/v1/auth/github/callback?code=abc&state=state_unknown')
    expect(unknown.status).toBe(400)
    expect(await unknown.text()).toContain('Crabbox login expired')
    expect((await SELF.fetch(`https://broker.test/v1/auth/github/callback?state=${'x'.repeat(500)}`)).status).toBe(400)
    // A code GitHub does not know fails the login instead of hanging it.
    const state = new URL(started.body.url).searchParams.get('state')
    const bogus = await SELF.fetch(`https://broker.test/v1/auth/github/callback?code=made-up&state=${state}`)
    expect(bogus.status).toBe(502)
    expect(await poll(started.body.loginID)).toMatchObject({
      status: 400,
      body: { status: 'failed', error: expect.stringContaining('bad_verification_code') },
    })
  })

  it('five wrong codes on the confirmation page fail the login', async () => {
    const started = await start()
    const page = await approveInBrowser(started.body.url, 'friend')
    let html = await page.text()
    const wrongCode = started.body.userCode === 'AAAA-AAAA' ? 'BBBB-BBBB' : 'AAAA-AAAA'
    for (let attempt = 1; attempt <= 4; attempt++) {
      const again = await SELF.fetch(confirmFormRequest(page.url, html, wrongCode))
      expect(again.status).toBe(400)
      html = await again.text()
      expect(html).toContain(`${5 - attempt} ${attempt === 4 ? 'try' : 'tries'} left`)
      expect((await poll(started.body.loginID)).body.status).toBe('pending')
    }
    const last = await SELF.fetch(confirmFormRequest(page.url, html, wrongCode))
    expect(last.status).toBe(400)
    expect(await last.text()).toContain('Crabbox login failed')
    // Even the right code is too late now.
    expect((await SELF.fetch(confirmFormRequest(page.url, html, started.body.userCode))).status).toBe(400)
    expect(await poll(started.body.loginID)).toMatchObject({
      status: 400,
      body: { status: 'failed', error: expect.stringContaining('wrong') },
    })
  })

  it('caps pending logins per client address (10; was 100 for everyone)', async () => {
    const hash = await sha256Hex(SECRET)
    let limited = 0
    for (let i = 0; i < 11; i++) if ((await start({ pollSecretHash: hash })).status === 429) limited++
    expect(limited).toBeGreaterThanOrEqual(1)
    expect((await start()).body).toMatchObject({ error: 'login_rate_limited' })
    // Expired ones stop counting.
    await inFleet(({ storage }) => storage.run('UPDATE github_logins SET expires_at = 0'))
    expect((await start()).status).toBe(200)
  })
})

describe('GitHub login settings', () => {
  it('counts pending logins per IPv4 address and per IPv6 /64', () => {
    expect(clientAddressKey('192.0.2.7')).toBe('192.0.2.7')
    expect(clientAddressKey('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(clientAddressKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64')
    expect(clientAddressKey('2001:0DB8:0001:0002::9')).toBe('2001:db8:1:2::/64')
    expect(clientAddressKey('2001:db8::1')).toBe('2001:db8:0:0::/64')
    expect(clientAddressKey(undefined)).toBe('unknown')
    expect(clientAddressKey('x'.repeat(100))).toBe('unknown')
  })

  it('is 503 until an OAuth app is configured, public URL included', async () => {
    await inFleet((deps) => {
      for (const missing of ['CRABBOX_GITHUB_CLIENT_ID', 'CRABBOX_PUBLIC_URL']) {
        const env = { ...deps.env, [missing]: undefined }
        expect(() => startGithubLogin({ ...deps, env }, { mode: 'cli', pollSecretHash: 'a'.repeat(64) })).toThrow(ApiError)
        expect(() => startGithubLogin({ ...deps, env }, { mode: 'cli', pollSecretHash: 'a'.repeat(64) })).toThrow(missing)
      }
    })
  })

  it('uses CRABBOX_PUBLIC_URL for the callback and enforces allowed teams', async () => {
    const results = await inFleet(async (deps) => {
      const env = { ...deps.env, CRABBOX_PUBLIC_URL: 'https://crabbox.example.com/', CRABBOX_GITHUB_ALLOWED_TEAMS: 'openclaw/maintainers' }
      const withEnv = { ...deps, env }
      const out: { redirect: string; status: number; text: string }[] = []
      for (const login of ['friend', 'quiet']) {
        const started = startGithubLogin(withEnv, { mode: 'cli', pollSecretHash: 'a'.repeat(64) }, { address: '192.0.2.1' })
        const url = new URL(started.url)
        const response = await githubCallback(withEnv, { code: github.codeFor(login), state: url.searchParams.get('state')! })
        out.push({ redirect: url.searchParams.get('redirect_uri')!, status: response.status, text: await response.text() })
      }
      return out
    })
    expect(results.map((r) => r.redirect)).toEqual([
      'https://crabbox.example.com/v1/auth/github/callback',
      'https://crabbox.example.com/v1/auth/github/callback',
    ])
    expect(results.map((r) => r.status)).toEqual([200, 403])
    expect(results[1]!.text).toContain('not in an allowed team (openclaw/maintainers)')
  })

  it('portal logins set the session cookie and redirect instead of waiting for a poll', async () => {
    const response = await inFleet(async (deps) => {
      const started = startGithubLogin(deps, { mode: 'portal', returnTo: '/portal/leases' })
      const state = new URL(started.url).searchParams.get('state')!
      return githubCallback(deps, { code: github.codeFor('friend'), state })
    })
    expect(response.status).toBe(302)
    expect(response.headers.get('location')).toBe('/portal/leases')
    expect(response.headers.get('set-cookie')).toMatch(
      /^crabbox_session=cbxu_[^;]+; Path=\/; HttpOnly; Secure; SameSite=Lax; Max-Age=2592000$/,
    )
  })
})
