import { describe, expect, it } from 'vitest'
import { accessJwt, adminCaller, api, headersFor, nobody, shared, userToken } from './broker-support.js'
import { accessTestSettings, workerTestBindings } from './fixtures/bindings.js'
import { edgeFetch } from './security-support.js'

/** Signs an arbitrary payload the way user tokens are signed (to prove what the broker ignores). */
async function signWithClaims(payload: Record<string, unknown>): Promise<string> {
  const b64 = (bytes: Uint8Array) =>
    btoa(String.fromCharCode(...bytes))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '')
  const part = b64(new TextEncoder().encode(JSON.stringify(payload)))
  const key = await crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(workerTestBindings.CRABBOX_SESSION_SECRET),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  return `cbxu_${part}.${b64(new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(part))))}`
}

describe('broker authentication', () => {
  it('refuses requests without a credential or with a wrong one', async () => {
    expect((await api(nobody, 'GET', '/v1/whoami')).status).toBe(401)
    const wrong = await api(nobody, 'GET', '/v1/whoami', undefined, { authorization: 'Bearer not-a-token' })
    expect(wrong.status).toBe(401)
    expect(wrong.body.error).toBe('unauthorized')
    // Exactly one space between scheme and token, like the reference.
    const sloppy = await api(nobody, 'GET', '/v1/whoami', undefined, { authorization: 'Bearer  test-shared-token' })
    expect(sloppy.status).toBe(401)
  })

  it('takes the owner from X-Crabbox-Owner and the default org for the shared token', async () => {
    const me = await api({ kind: 'shared', owner: 'peter@example.com' }, 'GET', '/v1/whoami')
    expect(me.body).toMatchObject({ owner: 'peter@example.com', org: 'openclaw', auth: 'bearer', admin: false })
    const org = await api(shared('peter@example.com', 'acme corp/ops'), 'GET', '/v1/whoami')
    expect(org.body.org).toBe('acme_corp_ops')
  })

  it('gives admin rights only to the admin token, whatever headers the caller sends', async () => {
    expect((await api(adminCaller, 'GET', '/v1/whoami')).body.admin).toBe(true)
    const forged = await api(shared('mallory@example.com'), 'GET', '/v1/whoami', undefined, {
      'x-crabbox-admin': 'true',
      'x-crabbox-auth': 'github',
    })
    expect(forged.body).toMatchObject({ admin: false, auth: 'bearer', owner: 'mallory@example.com' })
    expect((await api(shared('mallory@example.com'), 'GET', '/v1/admin/leases', undefined, { 'x-crabbox-admin': 'true' })).status).toBe(403)
  })

  it('accepts signed user tokens and ignores owner headers for them', async () => {
    const token = await userToken({ owner: 'friend@example.com', org: 'openclaw', login: 'friend' })
    expect(token).toMatch(/^cbxu_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
    const me = await api({ kind: 'user', token }, 'GET', '/v1/whoami', undefined, {
      'x-crabbox-owner': 'peter@example.com',
      'x-crabbox-org': 'evil',
    })
    expect(me.body).toMatchObject({ owner: 'friend@example.com', org: 'openclaw', auth: 'github', admin: false, login: 'friend' })
  })

  it('rejects tampered and expired user tokens', async () => {
    const token = await userToken({ owner: 'friend@example.com', org: 'openclaw', login: 'friend' })
    const [payload, signature] = token.slice(5).split('.')
    const forgedPayload = btoa(JSON.stringify({ ...JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))), admin: true }))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '')
    expect((await api({ kind: 'user', token: `cbxu_${forgedPayload}.${signature}` }, 'GET', '/v1/whoami')).status).toBe(401)
    // Even a correctly signed token never grants admin.
    const signedAdmin = await signWithClaims({
      typ: 'crabbox-user',
      owner: 'friend@example.com',
      org: 'openclaw',
      login: 'friend',
      iat: 1,
      exp: Math.floor(Date.now() / 1000) + 60,
      admin: true,
    })
    const asAdmin = await api({ kind: 'user', token: signedAdmin }, 'GET', '/v1/whoami')
    expect(asAdmin.body).toMatchObject({ owner: 'friend@example.com', admin: false })
    expect((await api({ kind: 'user', token: signedAdmin }, 'GET', '/v1/admin/leases')).status).toBe(403)
    const expired = await userToken({ owner: 'friend@example.com', org: 'openclaw', login: 'friend' }, Date.now() - 31 * 24 * 3600 * 1000)
    expect((await api({ kind: 'user', token: expired }, 'GET', '/v1/whoami')).status).toBe(401)
  })

  // Access is configured only here (the shared token then needs a valid Access JWT): edgeFetch runs the edge with its settings.
  const withAccess = (jwt?: string, extra: Record<string, string> = {}) =>
    edgeFetch(
      new Request('https://broker.test/v1/whoami', {
        headers: { ...headersFor(shared('claimed@example.com')), ...(jwt ? { 'cf-access-jwt-assertion': jwt } : {}), ...extra },
      }),
      accessTestSettings,
    )

  it('uses the email of a verified Access JWT over X-Crabbox-Owner', async () => {
    const jwt = await accessJwt({ email: 'verified@example.com' })
    const me = await withAccess(jwt)
    expect(((await me.json()) as { owner: string }).owner).toBe('verified@example.com')
  })

  // Was: a bad JWT fell back to the X-Crabbox-Owner owner. With Access configured there is no fallback (401).
  it('refuses Access JWTs with the wrong audience, issuer, key, expiry or not-before', async () => {
    const now = Math.floor(Date.now() / 1000)
    const bad = [
      await accessJwt({ email: 'x@example.com', aud: 'someone-else' }),
      await accessJwt({ email: 'x@example.com', iss: 'https://evil.cloudflareaccess.com' }),
      await accessJwt({ email: 'x@example.com', exp: now - 60 }),
      await accessJwt({ email: 'x@example.com', nbf: now + 600 }),
      await accessJwt({ email: 'x@example.com' }, 'unknown-kid'),
    ]
    for (const jwt of bad) expect((await withAccess(jwt)).status).toBe(401)
    // The raw Access email header is never trusted: not as a JWT substitute, nor as the owner without Access.
    expect((await withAccess(undefined, { 'cf-access-authenticated-user-email': 'boss@example.com' })).status).toBe(401)
    const raw = await api(shared('claimed@example.com'), 'GET', '/v1/whoami', undefined, {
      'cf-access-authenticated-user-email': 'boss@example.com',
    })
    expect(raw.body.owner).toBe('claimed@example.com')
  })

  it('answers health without a credential', async () => {
    expect((await api(nobody, 'GET', '/v1/health')).body).toEqual({ ok: true, service: 'crabbox-coordinator' })
  })
})
