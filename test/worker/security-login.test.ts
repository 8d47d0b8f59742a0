import { SELF } from 'cloudflare:test'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { sha256Hex } from '../../worker/fleet/github.js'
import { createFakeGithub, type FakeGithub } from '../support/fake-github.js'
import { confirmFormFields } from '../support/login-page.js'
import { api, nobody } from './broker-support.js'

/**
 * Findings 6 and 7 of the security review: GitHub login lock-out and phishing.
 *
 * Design (docs/security.md): pending logins are limited per client address
 * (CF-Connecting-IP) and expire sooner; a login is bound to a short user code that
 * `start` returns and the CLI prints, and the broker's approval page completes the
 * login only when the browser submits that same code (POST /v1/auth/github/confirm,
 * form fields `state` and `userCode`) together with the `confirmToken` only that page
 * carries: the attacker who started the login knows the state and the code, so those
 * alone must not confirm it.
 */

/** Pending logins one client address may hold. */
const PENDING_LOGINS_PER_ADDRESS = 10
/** How long a started login waits for the browser. */
const LOGIN_PENDING_MS = 5 * 60_000
/** The code the CLI shows and the approval page asks for. */
const USER_CODE = /^[A-Z0-9]{4}-[A-Z0-9]{4}$/

const SECRET = 'security-poll-secret'
let github: FakeGithub

beforeEach(() => {
  github = createFakeGithub({
    users: [{ login: 'victim', emails: [{ email: 'victim@example.com', primary: true, verified: true }], orgs: { openclaw: 'active' } }],
  })
  const realFetch = globalThis.fetch
  vi.stubGlobal('fetch', (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init)
    const host = new URL(request.url).hostname
    return host === 'github.test' || host === 'api.github.test' ? github.handler(request) : realFetch(input, init)
  })
})
afterEach(() => vi.unstubAllGlobals())

async function start(address: string) {
  return api(nobody, 'POST', '/v1/auth/github/start', { pollSecretHash: await sha256Hex(SECRET) }, { 'cf-connecting-ip': address })
}
const poll = (loginID: string) => api(nobody, 'POST', '/v1/auth/github/poll', { loginID, pollSecret: SECRET })

/** The victim's browser: GitHub approves, then follows the redirect to the broker's callback. */
async function victimApproves(authorizeUrl: string): Promise<Response> {
  github.approveAs('victim')
  const atGithub = await github.handler(new Request(authorizeUrl))
  expect(atGithub.status).toBe(302)
  return SELF.fetch(atGithub.headers.get('location')!)
}

/** A POST of the confirmation form; the victim's page adds its `confirmToken`, a forger has none. */
const confirm = (state: string, userCode: string, confirmToken?: string, headers: Record<string, string> = {}) =>
  SELF.fetch('https://broker.test/v1/auth/github/confirm', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ state, userCode, ...(confirmToken ? { confirmToken } : {}) }).toString(),
  })

describe('finding 7: a login approved by someone else needs the code the starter was shown', () => {
  it('start returns a short user code', async () => {
    const started = await start('192.0.2.20')
    expect(started.status).toBe(200)
    expect(started.body.userCode).toMatch(USER_CODE)
  })

  it('an attacker-started login approved by a victim hands the attacker no token without the code', async () => {
    const started = await start('192.0.2.21')
    const state = new URL(started.body.url).searchParams.get('state')!
    const page = await victimApproves(started.body.url)
    expect(page.status).toBe(200)
    const html = await page.text()
    // The page asks for the code instead of completing the login.
    expect(html).not.toContain('Crabbox login complete')
    expect(html).toContain('userCode')
    const victimPageToken = confirmFormFields(html).confirmToken!
    expect(victimPageToken).toBeTruthy()

    const attackerPoll = await poll(started.body.loginID)
    expect(attackerPoll.body.token).toBeUndefined()
    expect(attackerPoll.body.status).toBe('pending')

    // The attacker knows the state and the code, but not the token only the victim's page carries.
    const forged = await confirm(state, started.body.userCode)
    expect(forged.status).toBe(403)
    expect((await poll(started.body.loginID)).body).toMatchObject({ status: 'pending' })

    // A wrong code changes nothing.
    const wrong = await confirm(state, 'AAAA-AAAA' === started.body.userCode ? 'BBBB-BBBB' : 'AAAA-AAAA', victimPageToken)
    expect(wrong.status).toBe(400)
    expect((await poll(started.body.loginID)).body.token).toBeUndefined()
  })

  it('a confirmation posted from another site is refused', async () => {
    const started = await start('192.0.2.23')
    const state = new URL(started.body.url).searchParams.get('state')!
    const { confirmToken } = confirmFormFields(await (await victimApproves(started.body.url)).text())
    const crossSite = await confirm(state, started.body.userCode, confirmToken, { origin: 'https://evil.test' })
    expect(crossSite.status).toBe(403)
    expect((await poll(started.body.loginID)).body).toMatchObject({ status: 'pending' })
  })

  it('the confirmation page escapes what it shows and allows no script or framing', async () => {
    const started = await start('192.0.2.24')
    const page = await victimApproves(started.body.url)
    expect(page.headers.get('content-type')).toContain('text/html')
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'")
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
    expect(page.headers.get('cache-control')).toBe('no-store')
    expect(await page.text()).not.toMatch(/<script/i)
  })

  it('the same login completes once the browser confirms the code the CLI showed', async () => {
    const started = await start('192.0.2.22')
    const state = new URL(started.body.url).searchParams.get('state')!
    const { confirmToken } = confirmFormFields(await (await victimApproves(started.body.url)).text())
    const confirmed = await confirm(state, started.body.userCode, confirmToken, { origin: 'https://broker.test' })
    expect(confirmed.status).toBe(200)
    expect(await confirmed.text()).toContain('Crabbox login complete')
    const done = await poll(started.body.loginID)
    expect(done.body).toMatchObject({ status: 'complete', token: expect.stringMatching(/^cbxu_/), owner: 'victim@example.com' })
  })
})

// Last: before the fix, filling the global pending cap locks out every later start in this file.
describe('finding 6: one address cannot lock everyone out of GitHub login', () => {
  it(`a pending login expires within ${LOGIN_PENDING_MS / 60_000} minutes`, async () => {
    const started = await start('192.0.2.10')
    expect(started.status).toBe(200)
    expect(Date.parse(started.body.expiresAt) - Date.now()).toBeLessThanOrEqual(LOGIN_PENDING_MS + 5_000)
  })

  it(`limits pending logins to ${PENDING_LOGINS_PER_ADDRESS} per address; another address still starts`, async () => {
    const attacker = '203.0.113.66'
    const statuses: number[] = []
    for (let i = 0; i < 120; i++) statuses.push((await start(attacker)).status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(PENDING_LOGINS_PER_ADDRESS)
    const refused = await start(attacker)
    expect(refused.status).toBe(429)
    expect(refused.body).toMatchObject({ error: 'login_rate_limited', message: expect.any(String) })

    const bystander = await start('198.51.100.7')
    expect(bystander.status).toBe(200)
  })
})
