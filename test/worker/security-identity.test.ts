import { afterEach, describe, expect, it } from 'vitest'
import { signUserToken } from '../../worker/auth/tokens.js'
import { accessTestSettings, workerTestBindings } from './fixtures/bindings.js'
import { accessJwt, api, createLease, leaseId, restoreSettings, shared, type Who, userToken, withSettings } from './broker-support.js'
import { callJson } from './runs-support.js'
import { edgeFetch, staticPool } from './security-support.js'

/**
 * Findings 4 and 5 of the security review: what a shared-token holder can claim.
 *
 * The design (docs/security.md): identities come in two namespaces. A verified identity
 * (a `cbxu_` user token from GitHub login, or a valid Cloudflare Access JWT) owns its
 * records; an owner named in `X-Crabbox-Owner`/`X-Crabbox-Org` under the shared token is a
 * claimed identity and never matches a verified one, whatever the name. With Access
 * configured, the shared token needs a valid Access JWT (no header fallback). User
 * tokens are signed only with CRABBOX_SESSION_SECRET; without it GitHub login is off.
 * Lease caps under the shared token are also counted per credential.
 */

afterEach(restoreSettings)

const victimIdentity = { owner: 'victim@example.com', org: 'openclaw', login: 'victim' }
const ACCESS_SETTINGS = accessTestSettings

async function victim(): Promise<Who> {
  return { kind: 'user', token: await userToken(victimIdentity) }
}

describe('finding 4: header identities cannot claim verified ones', () => {
  it('a shared-token caller naming a GitHub-login owner cannot read their run or its log', async () => {
    const who = await victim()
    const run = (await callJson(who, '/v1/runs', { body: { command: ['npm', 'test'] }, status: 201 })).run
    await callJson(who, `/v1/runs/${run.id}/finish`, { body: { exitCode: 0, log: 'victim secret output\n' } })

    const impostor = shared(victimIdentity.owner, victimIdentity.org)
    const read = await api(impostor, 'GET', `/v1/runs/${run.id}`)
    const log = await api(impostor, 'GET', `/v1/runs/${run.id}/logs`)
    const list = await api(impostor, 'GET', '/v1/runs')
    expect(read.status).toBe(404)
    expect(log.status).toBe(404)
    expect(log.text).not.toContain('victim secret output')
    expect(list.body.runs.map((r: { id: string }) => r.id)).not.toContain(run.id)
  })

  it('a shared-token caller naming a GitHub-login owner cannot release their lease', async () => {
    const who = await victim()
    const lease = await createLease(who)
    const impostor = shared(victimIdentity.owner, victimIdentity.org)
    const release = await api(impostor, 'POST', `/v1/leases/${lease.id}/release`)
    expect([403, 404]).toContain(release.status)
    expect((await api(who, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('active')
  })

  it('claiming a verified user’s org by header does not reach their org-shared lease', async () => {
    const who = await victim()
    const lease = await createLease(who)
    expect((await api(who, 'PUT', `/v1/leases/${lease.id}/share`, { org: 'use' })).status).toBe(200)
    const claimed = await api(shared('someone@example.com', victimIdentity.org), 'GET', `/v1/leases/${lease.id}`)
    expect(claimed.status).toBe(404)
  })

  it('a shared-token caller naming a GitHub-login owner does not see their usage', async () => {
    const who = { kind: 'user' as const, token: await userToken({ owner: 'usage-victim@example.com', org: 'usage-org', login: 'uv' }) }
    await createLease(who)
    expect((await api(who, 'GET', '/v1/usage')).body.usage.leases).toBe(1)
    const claimed = await api(shared('usage-victim@example.com', 'usage-org'), 'GET', '/v1/usage')
    expect(claimed.status).toBe(200)
    expect(claimed.body.usage.leases).toBe(0)
  })

  it('with Access configured, the shared token without a valid Access JWT is 401 (no header fallback)', async () => {
    const request = (jwt?: string) =>
      new Request('https://broker.test/v1/whoami', {
        headers: {
          authorization: `Bearer ${workerTestBindings.CRABBOX_SHARED_TOKEN}`,
          'x-crabbox-owner': victimIdentity.owner,
          ...(jwt ? { 'cf-access-jwt-assertion': jwt } : {}),
        },
      })
    const missing = await edgeFetch(request(), ACCESS_SETTINGS)
    expect(missing.status).toBe(401)
    expect(await missing.json()).toMatchObject({ error: 'unauthorized', message: expect.any(String) })
    const forged = await edgeFetch(request(await accessJwt({ email: 'victim@example.com', aud: 'some-other-app' })), ACCESS_SETTINGS)
    expect(forged.status).toBe(401)
    // A valid JWT still works, and its email is the owner.
    const valid = await edgeFetch(request(await accessJwt({ email: 'access-user@example.com' })), ACCESS_SETTINGS)
    expect(valid.status).toBe(200)
    expect(((await valid.json()) as { owner: string }).owner).toBe('access-user@example.com')
  })

  it('without CRABBOX_SESSION_SECRET a user token signed with the shared token is refused', async () => {
    const forged = await signUserToken(victimIdentity, workerTestBindings.CRABBOX_SHARED_TOKEN, Date.now())
    const response = await edgeFetch(new Request('https://broker.test/v1/whoami', { headers: { authorization: `Bearer ${forged}` } }), {
      CRABBOX_SESSION_SECRET: undefined,
    })
    expect(response.status).toBe(401)
  })

  it('without CRABBOX_SESSION_SECRET GitHub login refuses to start (it would sign with the shared token)', async () => {
    await withSettings({ CRABBOX_SESSION_SECRET: undefined })
    const started = await api({ kind: 'none' }, 'POST', '/v1/auth/github/start', { pollSecretHash: 'a'.repeat(64) })
    expect(started.status).toBe(503)
    expect(started.body).toMatchObject({ error: 'github_oauth_not_configured', message: expect.any(String) })
  })
})

describe('finding 5: caps hold across rotated headers', () => {
  it('rotating X-Crabbox-Owner and X-Crabbox-Org under one shared token stays within the per-owner/per-org cap of 1', async () => {
    await withSettings({
      CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER: '1',
      CRABBOX_MAX_ACTIVE_LEASES_PER_ORG: '1',
      CRABBOX_STATIC_POOL: staticPool(20, 'rotate'),
    })
    const results = []
    for (let i = 0; i < 10; i++) {
      results.push(
        await api(shared(`rotating-${i}@example.com`, `org-${i}`), 'POST', '/v1/leases', {
          provider: 'static',
          sshPublicKey: 'ssh-ed25519 AAAA rotate',
          leaseID: leaseId(),
        }),
      )
    }
    const statuses = results.map((r) => r.status)
    expect(statuses.filter((s) => s === 201)).toHaveLength(1)
    expect(statuses.filter((s) => s === 429)).toHaveLength(9)
    expect(results.find((r) => r.status === 429)!.body).toMatchObject({ error: 'cost_limit_exceeded', message: expect.any(String) })
    // Leave the shared token's room free again for the next test (its lease counts per credential).
    const first = statuses.indexOf(201)
    const lease = results[first]!.body.lease
    expect((await api(shared(`rotating-${first}@example.com`, `org-${first}`), 'POST', `/v1/leases/${lease.id}/release`)).status).toBe(200)
  })

  it('verified users are capped each on their own, not by the shared token’s use', async () => {
    await withSettings({
      CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER: '1',
      CRABBOX_MAX_ACTIVE_LEASES_PER_ORG: '1',
      CRABBOX_STATIC_POOL: staticPool(20, 'verified'),
    })
    await createLease(shared('header-user@example.com', 'header-org'))
    const user = {
      kind: 'user' as const,
      token: await userToken({ owner: 'verified@example.com', org: 'verified-org', login: 'verified' }),
    }
    expect(
      (await api(user, 'POST', '/v1/leases', { provider: 'static', sshPublicKey: 'ssh-ed25519 AAAA v', leaseID: leaseId() })).status,
    ).toBe(201)
  })
})
