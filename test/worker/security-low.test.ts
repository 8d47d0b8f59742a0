import { SELF } from 'cloudflare:test'
import { afterEach, describe, expect, it } from 'vitest'
import { sha256Hex } from '../../worker/fleet/github.js'
import { api, createLease, headersFor, leaseId, restoreSettings, shared, userToken, withSettings } from './broker-support.js'
import { callJson, createRun } from './runs-support.js'
import { staticPool } from './security-support.js'

/**
 * The low-severity findings of the security review, one test each (the CLI ones live
 * in test/e2e/security-cli.test.ts). Numbers and designs: docs/security.md.
 */

/** Owner and org names longer than this (UTF-8 bytes) are refused at the edge with 400 `invalid_identity`. */
const MAX_IDENTITY_BYTES = 256
/** Idle timeouts below this are raised to it (0 or less still means "the default"). */
const MIN_IDLE_SECONDS = 60

afterEach(restoreSettings)

describe('low: run events cannot link another owner’s lease', () => {
  it('a lease.created event naming an invisible lease is 404 and the run keeps its own lease', async () => {
    const other = await createLease(shared('lease-holder@example.com'))
    const who = shared('linker@example.com')
    const run = await createRun(who)
    const linked = await api(who, 'POST', `/v1/runs/${run.id}/events`, {
      type: 'lease.created',
      leaseID: other.id,
      slug: other.slug,
      provider: 'static',
    })
    expect(linked.status).toBe(404)
    expect(linked.body).toMatchObject({ error: 'not_found', message: expect.any(String) })
    expect((await callJson(who, `/v1/runs/${run.id}`)).run.leaseID).not.toBe(other.id)
  })
})

describe('low: usage is scoped by org for non-admins', () => {
  it('the same owner name in another org is not counted in the caller’s usage', async () => {
    await createLease(shared('two-orgs@example.com', 'org-mine'))
    await createLease(shared('two-orgs@example.com', 'org-theirs'))
    const mine = await callJson(shared('two-orgs@example.com', 'org-mine'), '/v1/usage')
    expect(mine.usage.leases).toBe(1)
    expect(mine.usage.byOrg.map((g: { key: string }) => g.key)).toEqual(['org-mine'])
  })
})

describe('low: other owners’ leases cannot hide yours by slug', () => {
  it('50 other owners with the same slug do not hide the caller’s own lease', async () => {
    await withSettings({ CRABBOX_STATIC_POOL: staticPool(60, 'slug') })
    for (let i = 0; i < 50; i++) await createLease(shared(`squatter-${i}@example.com`), { slug: 'common-name' })
    const who = shared('slug-owner@example.com')
    const mine = await createLease(who, { slug: 'common-name' })
    const found = await api(who, 'GET', '/v1/leases/common-name')
    expect(found.status).toBe(200)
    expect(found.body.lease.id).toBe(mine.id)
  }, 60_000)
})

describe('low: identity lengths are bounded at the edge', () => {
  const huge = shared(`${'a'.repeat(17 * 1024)}@example.com`)

  it(`an owner over ${MAX_IDENTITY_BYTES} bytes is 400 invalid_identity on HTTP routes`, async () => {
    const result = await api(huge, 'GET', '/v1/whoami')
    expect(result.status).toBe(400)
    expect(result.body).toMatchObject({ error: 'invalid_identity', message: expect.any(String) })
  })

  it('the control socket refuses it before accepting (no 101 then 500)', async () => {
    const response = await SELF.fetch('https://broker.test/v1/control', { headers: { ...headersFor(huge), upgrade: 'websocket' } })
    expect(response.status).toBe(400)
    expect(response.webSocket).toBeNull()
    expect(await response.json()).toMatchObject({ error: 'invalid_identity', message: expect.any(String) })
  })
})

describe('low: a fractional idle timeout does not turn idle expiry off', () => {
  it(`idleTimeoutSeconds 0.4 is raised to ${MIN_IDLE_SECONDS} s on create and on heartbeat`, async () => {
    const who = shared('fractional@example.com')
    const lease = await createLease(who, { ttlSeconds: 7200, idleTimeoutSeconds: 0.4 })
    expect(lease.idleTimeoutSeconds).toBe(MIN_IDLE_SECONDS)
    expect(Date.parse(lease.expiresAt) - Date.parse(lease.createdAt)).toBeLessThanOrEqual(MIN_IDLE_SECONDS * 1000 + 1000)

    const beat = await api(who, 'POST', `/v1/leases/${lease.id}/heartbeat`, { idleTimeoutSeconds: 0.4 })
    expect(beat.status).toBe(200)
    expect(beat.body.lease.idleTimeoutSeconds).toBe(MIN_IDLE_SECONDS)
  })
})

describe('low: static-pool host keys are pinned', () => {
  it('a pool entry’s hostKey is handed to the lessee on the lease', async () => {
    const hostKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheStaticPoolEntryForTests0'
    await withSettings({ CRABBOX_STATIC_POOL: staticPool(2, 'pinned', { hostKey }) })
    const lease = await createLease(shared('pinned@example.com'))
    expect(lease.hostKeys).toEqual([hostKey])
    const read = await callJson(shared('pinned@example.com'), `/v1/leases/${lease.id}`)
    expect(read.lease.hostKeys).toEqual([hostKey])
  })

  it('hostKeys may list several keys (comments dropped); a malformed key makes the pool invalid, never unpinned', async () => {
    const ed25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheStaticPoolEntryForTests0'
    const ecdsa = 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHostKeyForTests='
    await withSettings({ CRABBOX_STATIC_POOL: staticPool(1, 'several', { hostKeys: [`${ed25519} root@box`, ecdsa] }) })
    expect((await createLease(shared('several@example.com'))).hostKeys).toEqual([ed25519, ecdsa])
    await restoreSettings()

    await withSettings({ CRABBOX_STATIC_POOL: staticPool(1, 'malformed', { hostKey: 'box1 ssh-ed25519' }) })
    const refused = await api(shared('malformed@example.com'), 'POST', '/v1/leases', {
      provider: 'static',
      sshPublicKey: 'ssh-ed25519 AAAA k',
    })
    expect(refused.status).toBe(503)
    expect(refused.body).toMatchObject({ error: 'static_pool_invalid', message: expect.stringContaining('hostKey') })
  })
})

describe('low: URLs handed to users never come from the Host header', () => {
  it('GitHub login started through a forged Host does not redirect to that host', async () => {
    const started = await SELF.fetch('https://attacker.test/v1/auth/github/start', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pollSecretHash: await sha256Hex('host-secret') }),
    })
    const body = (await started.json()) as { url?: string; error?: string; message?: string }
    if (started.status === 200) {
      const redirect = new URL(new URL(body.url!).searchParams.get('redirect_uri')!)
      expect(redirect.origin).not.toBe('https://attacker.test')
    } else {
      expect(started.status).toBeGreaterThanOrEqual(400)
      expect(body).toMatchObject({ error: expect.any(String), message: expect.any(String) })
    }
  })
})

describe('low: a verified owner with CR/LF is refused cleanly', () => {
  it('a user token whose owner contains CR/LF answers 400 invalid_identity, not 500', async () => {
    const token = await userToken({ owner: 'evil@example.com\r\nx-crabbox-admin: true', org: 'openclaw', login: 'evil' })
    const result = await api({ kind: 'user', token }, 'GET', '/v1/whoami')
    expect(result.status).toBe(400)
    expect(result.body).toMatchObject({ error: 'invalid_identity', message: expect.any(String) })
  })
})

describe('low: another owner’s lease ID is indistinguishable from a missing one', () => {
  it('creating a lease with another owner’s lease ID is 404, not 409', async () => {
    const other = await createLease(shared('id-holder@example.com'))
    const probe = await api(shared('id-prober@example.com'), 'POST', '/v1/leases', {
      provider: 'static',
      sshPublicKey: 'ssh-ed25519 AAAA probe',
      leaseID: other.id,
    })
    expect(probe.status).toBe(404)
    expect(probe.body).toMatchObject({ error: 'not_found', message: expect.any(String) })
    // A fresh ID works for the prober.
    expect(
      (
        await api(shared('id-prober@example.com'), 'POST', '/v1/leases', {
          provider: 'static',
          sshPublicKey: 'ssh-ed25519 AAAA probe',
          leaseID: leaseId(),
        })
      ).status,
    ).toBe(201)
  })
})
