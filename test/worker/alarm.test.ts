import { abortAllDurableObjects, runDurableObjectAlarm } from 'cloudflare:test'
import { afterEach, describe, expect, it } from 'vitest'
import type { Identity } from '../../worker/auth/identity.js'
import { cleanupState } from '../../worker/fleet/lease-cleanup.js'
import { createLease as createLeaseDirect } from '../../worker/fleet/lease-create.js'
import { getLeaseRecord } from '../../worker/fleet/lease-store.js'
import { releaseLease } from '../../worker/fleet/leases.js'
import type { BrokerProvider, Machine } from '../../worker/providers/types.js'
import { api, createLease, fleetStub, inFleet, leaseId, shared } from './broker-support.js'

/**
 * Arms the alarm far ahead, so only runDurableObjectAlarm (not the runtime's
 * own timer) runs it while the test looks.
 */
const armAlarm = () => inFleet((_deps, state) => state.storage.setAlarm(Date.now() + 3_600_000))

/** Puts a lease's expiry in the past, as if its idle timeout ran out. */
async function expireNow(id: string): Promise<void> {
  await inFleet((deps) => {
    const past = new Date(Date.now() - 1000).toISOString()
    deps.storage.run("UPDATE leases SET expires_at = ?, record = json_set(record, '$.expiresAt', ?) WHERE id = ?", past, past, id)
  })
  await armAlarm()
}

const leaseState = (id: string) =>
  inFleet((deps) => ({ lease: getLeaseRecord(deps.storage, id)!, cleanup: cleanupState(deps.storage, id)! }))
const claimCount = (id: string) => inFleet((deps) => deps.storage.all('SELECT 1 FROM static_claims WHERE lease_id = ?', id).length)

/**
 * A cloud provider stand-in whose deletes fail a set number of times, the way a
 * provider API does during an outage. Records every call.
 */
function flakyCloud(failures: number) {
  const calls = { create: 0, delete: 0 }
  const provider: BrokerProvider = {
    name: 'flaky',
    async create(request): Promise<Machine> {
      calls.create++
      return {
        provider: 'flaky',
        id: '4242',
        name: `crabbox-${request.slug}`,
        host: '203.0.113.9',
        sshUser: 'crabbox',
        sshPort: '2222',
        sshFallbackPorts: ['22'],
        workRoot: '/work/crabbox',
        serverType: 'cx53',
        labels: { lease: request.leaseId },
      }
    },
    async delete() {
      calls.delete++
      if (calls.delete <= failures) throw new Error(`provider unavailable (attempt ${calls.delete})`)
    },
    async describe() {
      return undefined
    },
    async price() {
      return 0.1
    },
  }
  return { provider, calls }
}

const restore: (() => Promise<void>)[] = []
afterEach(async () => {
  while (restore.length) await restore.pop()!()
})

describe('alarm', () => {
  it('expires a lease at its expiry and hands the static host back, idempotently', async () => {
    const who = shared('alarm@example.com', 'alarms')
    const lease = await createLease(who, { keep: true })
    expect(await claimCount(lease.id)).toBe(1)
    await expireNow(lease.id)
    expect(await runDurableObjectAlarm(fleetStub())).toBe(true)
    const after = await leaseState(lease.id)
    // Expiry ignores keep: the machine goes too.
    expect(after.lease).toMatchObject({ state: 'expired' })
    expect(after.lease.endedAt).toBeTruthy()
    expect(after.cleanup).toMatchObject({ pending: false })
    expect(await claimCount(lease.id)).toBe(0)
    // At-least-once: running the alarm again changes nothing.
    await armAlarm()
    await runDurableObjectAlarm(fleetStub())
    expect((await leaseState(lease.id)).lease).toEqual(after.lease)
    expect((await api(who, 'POST', `/v1/leases/${lease.id}/heartbeat`, {})).status).toBe(409)
  })

  it('retries machine deletion with backoff until the provider confirms, then stops', async () => {
    const flaky = flakyCloud(2)
    const identity: Identity = { owner: 'cloud@example.com', org: 'alarms', auth: 'bearer', admin: false, claimed: true, credential: '' }
    const id = leaseId()
    await inFleet(async (deps) => {
      const original = { providers: deps.providers, now: deps.now }
      restore.push(() =>
        inFleet((d) => {
          Object.assign(d, original)
        }),
      )
      deps.providers = {
        get: (name) => (name === 'flaky' ? flaky.provider : original.providers.get(name)),
        names: () => [...original.providers.names(), 'flaky'],
      }
      await createLeaseDirect(deps, identity, { leaseID: id, provider: 'flaky', sshPublicKey: 'ssh-ed25519 AAAA' })
    })
    expect(flaky.calls.create).toBe(1)
    await expireNow(id)
    await runDurableObjectAlarm(fleetStub())
    let state = await leaseState(id)
    expect(state.lease.state).toBe('expired')
    expect(state.cleanup).toEqual({ pending: true, attempts: 1, error: 'provider unavailable (attempt 1)' })
    // Not due yet: a second alarm before the backoff does not call the provider.
    await armAlarm()
    await runDurableObjectAlarm(fleetStub())
    expect(flaky.calls.delete).toBe(1)
    // Move the object's clock past each backoff.
    for (const skip of [11_000, 31_000]) {
      await inFleet(async (deps) => {
        const base = deps.now().getTime() + skip
        deps.now = () => new Date(base)
      })
      await armAlarm()
      await runDurableObjectAlarm(fleetStub())
    }
    state = await leaseState(id)
    expect(flaky.calls.delete).toBe(3)
    expect(state.cleanup).toEqual({ pending: false, attempts: 2 })
    await armAlarm()
    await runDurableObjectAlarm(fleetStub())
    expect(flaky.calls.delete).toBe(3)
  })

  it('deletes a machine kept at release when an admin deletes the lease later, once', async () => {
    const flaky = flakyCloud(0)
    const identity: Identity = { owner: 'keeper@example.com', org: 'alarms', auth: 'bearer', admin: false, claimed: true, credential: '' }
    const admin: Identity = { owner: 'ops@example.com', org: 'alarms', auth: 'bearer', admin: true, claimed: false, credential: '' }
    const id = leaseId()
    await inFleet(async (deps) => {
      const original = { providers: deps.providers }
      restore.push(() =>
        inFleet((d) => {
          Object.assign(d, original)
        }),
      )
      deps.providers = {
        get: (name) => (name === 'flaky' ? flaky.provider : original.providers.get(name)),
        names: () => original.providers.names(),
      }
      await createLeaseDirect(deps, identity, { leaseID: id, provider: 'flaky', sshPublicKey: 'ssh-ed25519 AAAA', keep: true })
      await releaseLease(deps, identity, id, { delete: false })
      expect(flaky.calls.delete).toBe(0)
      await releaseLease(deps, identity, id)
      expect(flaky.calls.delete).toBe(0)
      const deleted = await releaseLease(deps, admin, id, { delete: true, forgetKeep: true })
      expect(deleted).toMatchObject({ state: 'released', keep: false })
      expect(flaky.calls.delete).toBe(1)
      await releaseLease(deps, admin, id, { delete: true, forgetKeep: true })
      expect(flaky.calls.delete).toBe(1)
    })
  })

  it('keeps leases, shares and the schedule across eviction', async () => {
    const who = shared('evict@example.com', 'alarms')
    const lease = await createLease(who, { slug: 'survivor' })
    await api(who, 'PUT', `/v1/leases/${lease.id}/share`, { users: { 'pal@example.com': 'use' } })
    const scheduled = await inFleet((_deps, state) => state.storage.getAlarm())
    expect(scheduled).not.toBeNull()
    await abortAllDurableObjects()
    const read = await api(who, 'GET', '/v1/leases/survivor')
    expect(read.body.lease).toMatchObject({ id: lease.id, state: 'active', host: lease.host })
    expect(
      (await api(shared('pal@example.com', 'elsewhere'), 'GET', '/v1/leases?limit=500')).body.leases.map((l: { id: string }) => l.id),
    ).toContain(lease.id)
    expect(await inFleet((_deps, state) => state.storage.getAlarm())).not.toBeNull()
    // The evicted object still expires it.
    await expireNow(lease.id)
    await runDurableObjectAlarm(fleetStub())
    expect((await api(who, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('expired')
    expect(await claimCount(lease.id)).toBe(0)
  })

  it('clears the alarm when nothing is pending', async () => {
    const who = shared('quiet@example.com', 'quiet')
    // Expire everything live so the object has no lease work left.
    await inFleet((deps) => {
      const past = new Date(Date.now() - 1000).toISOString()
      deps.storage.run(
        "UPDATE leases SET expires_at = ?, record = json_set(record, '$.expiresAt', ?) WHERE state IN ('provisioning','active')",
        past,
        past,
      )
    })
    await armAlarm()
    await runDurableObjectAlarm(fleetStub())
    const pending = await inFleet(
      (deps) =>
        deps.storage.one<{ n: number }>(
          "SELECT count(*) AS n FROM leases WHERE state IN ('provisioning','active') OR cleanup_at IS NOT NULL",
        )!.n,
    )
    expect(pending).toBe(0)
    expect(await inFleet((_d, state) => state.storage.getAlarm())).toBeNull()
    const fresh = await createLease(who)
    // Armed at the reservation's expiry, before the provider call (the record's own expiry
    // counts from when provisioning finished, a moment later; the alarm then moves to it).
    expect(await inFleet((_d, state) => state.storage.getAlarm())).toBe(Date.parse(fresh.createdAt) + fresh.idleTimeoutSeconds * 1000)
  })
})
