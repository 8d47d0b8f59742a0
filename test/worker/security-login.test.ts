import { SELF } from 'cloudflare:test'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { sha256Hex } from '../../worker/fleet/github.js'
import { createFakeGithub, type FakeGithub } from '../support/fake-github.js'
import { api, nobody } from './broker-support.js'

/**
 * Findings 6 and 7 of the security review: GitHub login lock-out and phishing.
 *
 * Design (docs/security.md): pending logins are limited per client address
 * (CF-Connecting-IP) and expire sooner; a login is bound to a short user code that
 * `start` returns and the CLI prints, and the broker's approval page completes the
 * login only when the browser submits that same code (POST /v1/auth/github/confirm,
 * form fields `state` and `userCode`).
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

const confirm = (state: string, userCode: string) =>
  SELF.fetch('https://broker.test/v1/auth/github/confirm', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ state, userCode }).toString(),
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

    const attackerPoll = await poll(started.body.loginID)
    expect(attackerPoll.body.token).toBeUndefined()
    expect(attackerPoll.body.status).toBe('pending')

    // A wrong code changes nothing.
    const wrong = await confirm(state, 'AAAA-AAAA' === started.body.userCode ? 'BBBB-BBBB' : 'AAAA-AAAA')
    expect(wrong.status).toBe(400)
    expect((await poll(started.body.loginID)).body.token).toBeUndefined()
  })

  it('the same login completes once the browser confirms the code the CLI showed', async () => {
    const started = await start('192.0.2.22')
    const state = new URL(started.body.url).searchParams.get('state')!
    await (await victimApproves(started.body.url)).text()
    const confirmed = await confirm(state, started.body.userCode)
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
