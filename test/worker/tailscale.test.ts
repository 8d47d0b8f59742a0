import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import type { Env } from '../../worker/env.js'
import { createFakeEc2, type FakeEc2 } from '../support/fake-ec2.js'
import { createFakeHetzner, type FakeHetzner } from '../support/fake-hetzner.js'
import { createFakeTailscale, type FakeTailscale } from '../support/fake-tailscale.js'
import { api, inFleet, leaseId, shared } from './broker-support.js'
import { restoreProviders, useCloudFakes } from './cloud-support.js'

/**
 * Brokered Tailscale against the fake Tailscale API: a one-off, ephemeral,
 * pre-authorized, tagged key is minted per lease and reaches the runner's
 * cloud-init only; tag, exit-node and settings checks answer the documented
 * errors; `POST /v1/leases/{id}/tailscale` records the runner's state. The key
 * must never show in a lease record, a list, an error or the broker's storage.
 */

const owner = shared('tailnet@example.com', 'tailnet')
const stranger = shared('stranger@example.com', 'elsewhere')
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJyb2tlci10ZXN0LWtleS1tYXRlcmlhbC0wMDAwMDAw crabbox test'

let hetzner: FakeHetzner
let ec2: FakeEc2
let tailscale: FakeTailscale
let savedEnv: Env | undefined
let savedFetch: typeof fetch | undefined

const create = (body: Record<string, unknown>, who = owner) =>
  api(who, 'POST', '/v1/leases', { sshPublicKey: publicKey, leaseID: leaseId(), provider: 'hetzner', class: 'standard', ...body })

/** Points the Fleet object's Tailscale calls at the fake, with these settings. */
async function useTailscale(settings: Record<string, string | undefined>) {
  await inFleet((deps) => {
    savedEnv ??= deps.env
    savedFetch ??= deps.fetch
    deps.env = { ...savedEnv, ...settings } as Env
    deps.fetch = tailscale.fetch as typeof fetch
  })
}

const configured = () => ({
  CRABBOX_TAILSCALE_CLIENT_ID: tailscale.clientId,
  CRABBOX_TAILSCALE_CLIENT_SECRET: tailscale.clientSecret,
  CRABBOX_TAILSCALE_TAILNET: tailscale.tailnet,
  CRABBOX_TAILSCALE_TAGS: 'tag:crabbox,tag:ci',
  CRABBOX_TAILSCALE_API_URL: 'https://tailscale.fake',
})

/** Every stored row of the Fleet object, as text: the key must be in none of them. */
const storedText = () =>
  inFleet((deps) => {
    const tables = deps.storage.all<{ name: string }>(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'",
    )
    return JSON.stringify(tables.map(({ name }) => deps.storage.all(`SELECT * FROM "${name}"`)))
  })

const cloudInit = (userData: string) =>
  parse(userData.replace(/^#cloud-config\n/, '')) as {
    write_files: { path: string; content: string; permissions: string }[]
    runcmd: string[]
  }

beforeEach(async () => {
  hetzner = createFakeHetzner()
  ec2 = createFakeEc2()
  tailscale = createFakeTailscale()
  await useCloudFakes({ hetzner, ec2 })
})

afterEach(async () => {
  hetzner.releaseHung()
  ec2.releaseHung()
  tailscale.releaseHung()
  await inFleet((deps) => {
    if (savedEnv) deps.env = savedEnv
    if (savedFetch) deps.fetch = savedFetch
  })
  savedEnv = undefined
  savedFetch = undefined
  await restoreProviders()
})

describe('brokered Tailscale leases', () => {
  it('mints a one-off tagged key, puts it in cloud-init only, and never stores or returns it', async () => {
    await useTailscale(configured())
    const created = await create({
      slug: 'Blue Lobster',
      tailscale: true,
      tailscaleTags: ['tag:ci'],
      tailscaleHostname: 'crabbox-{slug}',
      tailscaleExitNode: 'mac-studio.tailnet.ts.net',
      tailscaleExitNodeAllowLanAccess: true,
    })
    expect(created.status).toBe(201)
    const lease = created.body.lease
    expect(lease.tailscale).toEqual({
      enabled: true,
      hostname: `crabbox-${lease.slug}`,
      tags: ['tag:ci'],
      state: 'requested',
      exitNode: 'mac-studio.tailnet.ts.net',
      exitNodeAllowLanAccess: true,
    })
    expect(tailscale.minted).toHaveLength(1)
    const [minted] = tailscale.minted
    expect(minted).toMatchObject({ reusable: false, ephemeral: true, preauthorized: true, tags: ['tag:ci'], expirySeconds: 600 })
    expect(minted.description).toContain(lease.id)

    // The key reaches the machine's user data, in a root-only file the join script reads.
    const server = hetzner.servers.get(Number(lease.cloudID))!
    const init = cloudInit(server.user_data)
    const keyFile = init.write_files.find((file) => file.path === '/run/crabbox/tailscale-auth-key')!
    expect(keyFile).toMatchObject({ permissions: '0600', content: `${minted.key}\n` })
    const up = init.write_files.find((file) => file.path === '/usr/local/bin/crabbox-tailscale-up')!.content
    expect(up).toContain("--hostname='crabbox-")
    expect(up).toContain("--advertise-tags='tag:ci'")
    expect(up).toContain("--exit-node='mac-studio.tailnet.ts.net' --exit-node-allow-lan-access")
    expect(up).toContain('--auth-key="file:$key"')
    expect(JSON.stringify(init.runcmd)).not.toContain(minted.key)

    // Never in what the broker answers or keeps.
    const read = await api(owner, 'GET', `/v1/leases/${lease.id}`)
    const list = await api(owner, 'GET', '/v1/leases')
    for (const text of [created.text, read.text, list.text, await storedText()]) expect(text).not.toContain(minted.key)
    expect(JSON.stringify(server.labels)).not.toContain(minted.key)
    expect(server.labels).toMatchObject({
      tailscale: 'true',
      tailscale_hostname: lease.tailscale.hostname,
      tailscale_exit_node: 'mac-studio.tailnet.ts.net',
    })
  })

  it('uses tag:crabbox by default, every allowed tag for an empty list, and refuses the rest', async () => {
    await useTailscale(configured())
    const plain = await create({ tailscale: true })
    expect(plain.status).toBe(201)
    expect(plain.body.lease.tailscale).toMatchObject({ tags: ['tag:crabbox'], hostname: `crabbox-${plain.body.lease.slug}` })
    const all = await create({ tailscale: true, tailscaleTags: [] })
    expect(all.body.lease.tailscale.tags).toEqual(['tag:crabbox', 'tag:ci'])
    const mixed = await create({ tailscale: true, tailscaleTags: [' TAG:CI ', 'tag:ci'] })
    expect(mixed.body.lease.tailscale.tags).toEqual(['tag:ci'])

    const refused = await create({ tailscale: true, tailscaleTags: ['tag:ci', 'tag:prod'] })
    expect(refused.status).toBe(400)
    expect(refused.body).toEqual({ error: 'invalid_tailscale_tags', message: 'tailscale tags not allowed: tag:prod' })
    const malformed = await create({ tailscale: true, tailscaleTags: ['prod'] })
    expect(malformed.body).toEqual({ error: 'invalid_tailscale_tags', message: 'tailscale tags not allowed: prod' })
    expect(tailscale.minted).toHaveLength(3)
  })

  it('renders the hostname template with id, slug and provider', async () => {
    await useTailscale(configured())
    const id = leaseId()
    const result = await create({ leaseID: id, slug: 'Red Crab', tailscale: true, tailscaleHostname: 'CI_{provider}.{id}/{slug}' })
    expect(result.body.lease.tailscale.hostname).toBe(`ci-hetzner-${id.replace('_', '-')}-${result.body.lease.slug}`)
  })

  it('answers tailscale_disabled without a client, and refuses LAN access without an exit node', async () => {
    await useTailscale({})
    const disabled = await create({ tailscale: true })
    expect(disabled.status).toBe(403)
    expect(disabled.body).toEqual({ error: 'tailscale_disabled', message: 'Tailscale is disabled for this coordinator' })
    await useTailscale({ ...configured(), CRABBOX_TAILSCALE_ENABLED: '0' })
    expect((await create({ tailscale: true })).body.error).toBe('tailscale_disabled')

    await useTailscale(configured())
    const lan = await create({ tailscale: true, tailscaleExitNodeAllowLanAccess: true })
    expect(lan.status).toBe(400)
    expect(lan.body.message).toContain('tailscaleExitNodeAllowLanAccess')
    const staticPool = await create({ provider: 'static', tailscale: true })
    expect(staticPool.status).toBe(400)
    expect(tailscale.minted).toHaveLength(0)
    expect(hetzner.servers.size).toBe(0)
  })

  it('answers tailscale_unavailable when the API refuses or fails, and makes nothing', async () => {
    const leases = () =>
      inFleet((deps) => deps.storage.one<{ n: number }>("SELECT count(*) AS n FROM leases WHERE owner = 'tailnet@example.com'")!.n)
    const before = await leases()
    await useTailscale({ ...configured(), CRABBOX_TAILSCALE_CLIENT_SECRET: 'tskey-client-wrong' })
    const badClient = await create({ tailscale: true })
    expect(badClient.status).toBe(502)
    expect(badClient.body.error).toBe('tailscale_unavailable')
    expect(badClient.body.message).toContain('HTTP 401')
    expect(badClient.text).not.toContain('tskey-client-wrong')

    await useTailscale(configured())
    tailscale.inject({ call: 'keys', kind: 'error', status: 500, message: 'backend down' })
    const failed = await create({ tailscale: true })
    expect(failed.body).toEqual({ error: 'tailscale_unavailable', message: 'Tailscale auth key creation failed: HTTP 500: backend down' })
    tailscale.inject({ call: 'token', kind: 'lost' })
    const lost = await create({ tailscale: true })
    expect(lost.body.error).toBe('tailscale_unavailable')
    expect(hetzner.servers.size).toBe(0)
    expect(await leases()).toBe(before)
  })
})

describe('POST /v1/leases/{id}/tailscale', () => {
  it('moves requested to ready with the address, and clears the error unless failed', async () => {
    await useTailscale(configured())
    const lease = (await create({ tailscale: true, tailscaleExitNode: 'mac-studio.tailnet.ts.net' })).body.lease
    const path = `/v1/leases/${lease.id}/tailscale`
    const ready = await api(owner, 'POST', path, {
      enabled: true,
      hostname: lease.tailscale.hostname,
      fqdn: `${lease.tailscale.hostname}.example.ts.net`,
      ipv4: '100.64.0.10',
      exitNodeAllowLanAccess: true,
      state: 'ready',
    })
    expect(ready.status).toBe(200)
    expect(ready.body.lease.tailscale).toMatchObject({
      ipv4: '100.64.0.10',
      state: 'ready',
      fqdn: `${lease.tailscale.hostname}.example.ts.net`,
      exitNode: 'mac-studio.tailnet.ts.net',
      exitNodeAllowLanAccess: true,
      tags: ['tag:crabbox'],
    })
    const stale = await api(owner, 'POST', path, { error: 'old news', state: 'bogus' })
    expect(stale.body.lease.tailscale.state).toBe('ready')
    expect(stale.body.lease.tailscale.error).toBeUndefined()
    const failed = await api(owner, 'POST', path, {
      state: 'failed',
      error: 'exit node mac-studio.tailnet.ts.net is not active: the exit node is offline',
    })
    expect(failed.body.lease.tailscale).toMatchObject({ state: 'failed', error: expect.stringContaining('is not active') })
    expect((await api(owner, 'GET', `/v1/leases/${lease.id}`)).body.lease.tailscale.state).toBe('failed')
  })

  it('is 404 for a lease the caller cannot see', async () => {
    await useTailscale(configured())
    const lease = (await create({ tailscale: true })).body.lease
    const hidden = await api(stranger, 'POST', `/v1/leases/${lease.id}/tailscale`, { state: 'ready', ipv4: '100.64.0.11' })
    expect(hidden.status).toBe(404)
    expect((await api(owner, 'GET', `/v1/leases/${lease.id}`)).body.lease.tailscale.state).toBe('requested')
  })
})
