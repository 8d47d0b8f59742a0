import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Env } from '../../worker/env.js'
import type { FleetDeps } from '../../worker/fleet/deps.js'
import type { ProviderRegistry } from '../../worker/providers/registry.js'
import { createAwsBrokerProvider } from '../../worker/providers/aws.js'
import { createFakeEc2, type FakeEc2 } from '../support/fake-ec2.js'
import { adminCaller, api, createLease, inFleet, leaseId, shared } from './broker-support.js'

/**
 * Images baked from AWS leases (`POST /v1/images`, `GET /v1/images/{ami}`,
 * `POST /v1/images/{ami}/promote`) against the EC2 fake, and the promoted image
 * as the AMI of the next brokered AWS lease.
 */

const owner = shared('imager@example.com')
const friend = shared('friend@example.com')
const stranger = shared('stranger@example.com')
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJyb2tlci10ZXN0LWtleS1tYXRlcmlhbC0wMDAwMDAw crabbox test'
const fast = { timeoutMs: 300, pollIntervalMs: 1, sleep: async () => {} }

let ec2: FakeEc2
let original: ProviderRegistry | undefined

async function useFake(env: Record<string, string> = {}) {
  await inFleet((deps: FleetDeps) => {
    original ??= deps.providers
    const aws = createAwsBrokerProvider(
      {
        storage: deps.storage,
        env: {
          AWS_ACCESS_KEY_ID: ec2.accessKeyId,
          AWS_SECRET_ACCESS_KEY: ec2.secretAccessKey,
          CRABBOX_AWS_ENDPOINT: 'https://ec2.fake/',
          ...env,
        } as unknown as Env,
        fetch: ec2.fetch as typeof fetch,
      },
      fast,
    )
    const fallback = original
    deps.providers = { get: (name) => (name === 'aws' ? aws : fallback.get(name)), names: () => fallback.names() }
  })
}

async function awsLease(who = owner, extra: Record<string, unknown> = {}) {
  const created = await api(who, 'POST', '/v1/leases', {
    provider: 'aws',
    class: 'standard',
    sshPublicKey: publicKey,
    leaseID: leaseId(),
    ...extra,
  })
  expect(created.status, created.text).toBe(201)
  return created.body.lease
}

const launches = () => ec2.calls.filter((c) => c.action === 'RunInstances')

beforeEach(async () => {
  ec2 = createFakeEc2()
  await useFake()
})

afterEach(async () => {
  ec2.releaseHung()
  await inFleet((deps: FleetDeps) => {
    if (original) deps.providers = original
    deps.storage.run('UPDATE images SET promoted_at = NULL')
  })
})

describe('POST /v1/images', () => {
  it("the lease's owner bakes an AMI of its instance, tagged with the lease, without a reboot by default", async () => {
    const lease = await awsLease()
    const created = await api(owner, 'POST', '/v1/images', { leaseID: lease.id, name: 'crabbox-warm (2026.12)' })
    expect(created.status, created.text).toBe(201)
    expect(created.body.image).toMatchObject({ name: 'crabbox-warm (2026.12)', state: 'pending', region: 'eu-west-1', leaseID: lease.id })
    expect(created.body.image.id).toMatch(/^ami-[0-9a-f]{17}$/)
    const call = ec2.calls.find((c) => c.action === 'CreateImage')!
    expect(call.params).toMatchObject({ InstanceId: lease.cloudID, Name: 'crabbox-warm (2026.12)', NoReboot: 'true' })
    expect(ec2.images.get(created.body.image.id)!.tags).toMatchObject({ crabbox: 'true', lease: lease.id, owner: 'imager@example.com' })

    // The slug works as the reference too (`id` is the alias of `leaseID`), and noReboot can be turned off.
    const bySlug = await api(owner, 'POST', '/v1/images', { id: lease.slug, name: 'by-slug', noReboot: false })
    expect(bySlug.status, bySlug.text).toBe(201)
    expect(ec2.calls.filter((c) => c.action === 'CreateImage').at(-1)!.params.NoReboot).toBe('false')
  })

  it('a manage sharee and an admin may image the lease; a use sharee and a stranger may not', async () => {
    const lease = await awsLease()
    const share = await api(owner, 'PUT', `/v1/leases/${lease.id}/share`, { users: { 'friend@example.com': 'use' } })
    expect(share.status, share.text).toBe(200)
    const asUser = await api(friend, 'POST', '/v1/images', { leaseID: lease.id, name: 'use-only' })
    expect(asUser.status).toBe(403)
    expect(asUser.body).toEqual({ error: 'forbidden', message: 'lease manage access required' })
    // Not visible at all: the same 404 as a missing lease.
    expect((await api(stranger, 'POST', '/v1/images', { leaseID: lease.id, name: 'not-mine' })).status).toBe(404)

    await api(owner, 'PUT', `/v1/leases/${lease.id}/share`, { users: { 'friend@example.com': 'manage' } })
    expect((await api(friend, 'POST', '/v1/images', { leaseID: lease.id, name: 'managed' })).status).toBe(201)
    expect((await api(adminCaller, 'POST', '/v1/images', { leaseID: lease.id, name: 'by-admin' })).status).toBe(201)
    expect(ec2.images.size).toBe(2)
  })

  it('answers 404 for a missing lease, 400 for bad input and non-AWS leases, 409 for a released lease', async () => {
    expect((await api(owner, 'POST', '/v1/images', { leaseID: 'cbx_000000000404', name: 'missing' })).status).toBe(404)
    const noLease = await api(owner, 'POST', '/v1/images', { name: 'no-lease' })
    expect(noLease.status).toBe(400)
    expect(noLease.body.message).toContain('leaseID is required')
    const lease = await awsLease()
    const badName = await api(owner, 'POST', '/v1/images', { leaseID: lease.id, name: 'x' })
    expect(badName.status).toBe(400)
    expect(badName.body.message).toContain('name')

    const pool = await createLease(owner)
    const staticImage = await api(owner, 'POST', '/v1/images', { leaseID: pool.id, name: 'static-host' })
    expect(staticImage.status).toBe(400)
    expect(staticImage.body.error).toBe('unsupported_provider')

    await api(owner, 'POST', `/v1/leases/${lease.id}/release`, { delete: true })
    const released = await api(owner, 'POST', '/v1/images', { leaseID: lease.id, name: 'too-late' })
    expect(released.status).toBe(409)
    expect(released.body.error).toBe('lease_not_active')
    expect(ec2.images.size).toBe(0)
  })
})

describe('GET /v1/images/{ami}', () => {
  it('its creator and an admin read the state; others get 404; unknown and malformed IDs are 404 and 400', async () => {
    const lease = await awsLease()
    const { body } = await api(owner, 'POST', '/v1/images', { leaseID: lease.id, name: 'readable' })
    const id = body.image.id
    const read = await api(owner, 'GET', `/v1/images/${id}`)
    expect(read.status, read.text).toBe(200)
    // The fake turns an image available on the first look, as EC2 does once the snapshot is done.
    expect(read.body.image).toMatchObject({ id, name: 'readable', state: 'available', region: 'eu-west-1', leaseID: lease.id })
    expect((await api(adminCaller, 'GET', `/v1/images/${id}`)).body.image.state).toBe('available')
    expect((await api(stranger, 'GET', `/v1/images/${id}`)).status).toBe(404)
    expect((await api(adminCaller, 'GET', '/v1/images/ami-00000000000000404')).status).toBe(404)
    const malformed = await api(owner, 'GET', '/v1/images/not-an-ami')
    expect(malformed.status).toBe(400)
    expect(malformed.body.message).toContain('AMI')
  })
})

describe('POST /v1/images/{ami}/promote', () => {
  it('is admin only, refuses an image that is not available yet, and makes the next AWS lease start from it', async () => {
    ec2 = createFakeEc2({ imagePolls: 2 })
    await useFake()
    const lease = await awsLease()
    const { body } = await api(owner, 'POST', '/v1/images', { leaseID: lease.id, name: 'promotable' })
    const id = body.image.id

    const byOwner = await api(owner, 'POST', `/v1/images/${id}/promote`)
    expect(byOwner.status).toBe(403)
    expect(byOwner.body.error).toBe('forbidden')

    const early = await api(adminCaller, 'POST', `/v1/images/${id}/promote`)
    expect(early.status).toBe(409)
    expect(early.body).toEqual({ error: 'image_not_available', message: `image ${id} is pending; promote it once it is available` })
    expect((await api(adminCaller, 'POST', '/v1/images/ami-00000000000000404/promote')).status).toBe(404)

    const promoted = await api(adminCaller, 'POST', `/v1/images/${id}/promote`)
    expect(promoted.status, promoted.text).toBe(200)
    expect(promoted.body.image).toMatchObject({ id, state: 'available', name: 'promotable' })
    expect(Date.parse(promoted.body.image.promotedAt)).not.toBeNaN()

    const before = launches().length
    await awsLease(shared('next@example.com'))
    expect(launches().slice(before)[0].params.ImageId).toBe(id)
    // The lease's own awsAMI still wins over the promoted image.
    await awsLease(shared('next@example.com'), { awsAMI: 'ami-0123456789abcdef0' })
    expect(launches().at(-1)!.params.ImageId).toBe('ami-0123456789abcdef0')
  })

  it('the promoted AMI is used only in its own region; another region falls back to the default image', async () => {
    const lease = await awsLease()
    const { body } = await api(owner, 'POST', '/v1/images', { leaseID: lease.id, name: 'regional' })
    expect((await api(adminCaller, 'GET', `/v1/images/${body.image.id}`)).body.image.state).toBe('available')
    expect((await api(adminCaller, 'POST', `/v1/images/${body.image.id}/promote`)).status).toBe(200)

    ec2.setNoCapacity(['eu-west-1'])
    await useFake({ CRABBOX_CAPACITY_REGIONS: 'eu-west-2' })
    const before = launches().length
    await awsLease(shared('elsewhere@example.com'))
    const placed = launches().slice(before).at(-1)!
    expect(placed.region).toBe('eu-west-2')
    expect(placed.params.ImageId).not.toBe(body.image.id)
    expect(placed.params.ImageId).toMatch(/^ami-0/)
  })
})
