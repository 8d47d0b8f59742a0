import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, runCli } from '../support/cli.js'
import { createFakeHetzner, serveFake, type ServedFake } from '../support/fake-hetzner.js'
import { createFakeEc2 } from '../support/fake-ec2.js'

/**
 * `crabbox cleanup` in direct mode, as a subprocess against the fakes on
 * loopback: only machines whose labels prove they are expired, unkept crabbox
 * leases go; everything else stays, and a configured broker stops it cold.
 */

const now = () => Math.floor(Date.now() / 1000)
const labels = (lease: string, over: Record<string, string>) => ({
  crabbox: 'true',
  created_by: 'crabbox',
  lease,
  slug: `s-${lease.slice(-4)}`,
  keep: 'false',
  provider_key: `crabbox-${lease.replace('_', '-')}`,
  expires_at: String(now() - 7200),
  ...over,
})

describe('crabbox cleanup (direct mode)', () => {
  const served: ServedFake[] = []
  afterAll(async () => {
    for (const s of served) await s.close()
  })

  it('deletes exactly the expired, unkept crabbox machines on Hetzner, and dry-run deletes nothing', async () => {
    const fake = createFakeHetzner()
    const server = await serveFake(fake.handler)
    served.push(server)
    const ids = {
      expiredOff: fake.seedServer({
        name: 'expired-off',
        status: 'off',
        labels: labels('cbx_00000000000a', { expires_at: String(now() - 60) }),
      }),
      expiredLongRunning: fake.seedServer({ name: 'expired-long', status: 'running', labels: labels('cbx_00000000000b', {}) }),
      kept: fake.seedServer({ name: 'kept', labels: labels('cbx_00000000000c', { keep: 'true' }) }),
      fresh: fake.seedServer({ name: 'fresh', labels: labels('cbx_00000000000d', { expires_at: String(now() + 3600) }) }),
      justExpiredRunning: fake.seedServer({
        name: 'just-expired',
        status: 'running',
        labels: labels('cbx_00000000000e', { expires_at: String(now() - 120) }),
      }),
      foreign: fake.seedServer({
        name: 'foreign',
        labels: { crabbox: 'true', lease: 'cbx_00000000000f', keep: 'false', expires_at: String(now() - 7200) },
      }),
      noExpiry: fake.seedServer({ name: 'no-expiry', labels: labels('cbx_000000000010', { expires_at: 'soon' }) }),
    }
    fake.seedKey('crabbox-cbx-00000000000a', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA a')
    fake.seedKey('my-laptop', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB b')
    const home = cliHome()
    const env = { HCLOUD_TOKEN: fake.token, CRABBOX_HETZNER_API_URL: `${server.url}/v1` }

    const dry = await runCli(['cleanup', '--provider', 'hetzner', '--dry-run', '--json'], { home, env })
    expect(dry.code, dry.stderr).toBe(0)
    const planned = JSON.parse(dry.stdout)
    expect(planned.dryRun).toBe(true)
    expect(planned.deleted.map((i: { name: string }) => i.name).sort()).toEqual(['expired-long', 'expired-off'])
    expect(fake.servers.size).toBe(7)

    const real = await runCli(['cleanup', '--provider', 'hetzner'], { home, env })
    expect(real.code, real.stderr).toBe(0)
    expect(real.stdout).toMatch(/2 deleted, 5 kept/)
    expect([...fake.servers.keys()].sort()).toEqual([ids.kept, ids.fresh, ids.justExpiredRunning, ids.foreign, ids.noExpiry].sort())
    expect([...fake.keys.values()].map((k) => k.name)).toEqual(['my-laptop'])
  })

  it('terminates only expired crabbox instances on AWS across the capacity regions', async () => {
    const fake = createFakeEc2()
    const server = await serveFake(fake.handler)
    served.push(server)
    const gone = fake.seedInstance({ region: 'eu-west-2', tags: labels('cbx_0000000000a1', {}) })
    const kept = fake.seedInstance({ region: 'eu-west-1', tags: labels('cbx_0000000000a2', { keep: 'true' }) })
    fake.seedKeyPair('eu-west-2', 'crabbox-cbx-0000000000a1')
    const result = await runCli(['cleanup', '--provider', 'aws', '--json'], {
      env: {
        AWS_ACCESS_KEY_ID: fake.accessKeyId,
        AWS_SECRET_ACCESS_KEY: fake.secretAccessKey,
        CRABBOX_AWS_ENDPOINT: server.url,
        CRABBOX_CAPACITY_REGIONS: 'eu-west-2',
      },
    })
    expect(result.code, result.stderr).toBe(0)
    expect(JSON.parse(result.stdout).deleted.map((i: { id: string }) => i.id)).toEqual([gone])
    expect(fake.live().map((i) => i.id)).toEqual([kept])
    expect(fake.keyPairs.size).toBe(0)
  })

  it('refuses to run when a broker is configured, and without credentials says what to set', async () => {
    const brokered = await runCli(['cleanup', '--provider', 'hetzner'], {
      env: { CRABBOX_COORDINATOR: 'http://127.0.0.1:9', HCLOUD_TOKEN: 'x' },
    })
    expect(brokered.code).toBe(2)
    expect(brokered.stderr).toMatch(/refuses to run while a broker is configured/)
    const noToken = await runCli(['cleanup', '--provider', 'hetzner'], { env: { HCLOUD_TOKEN: undefined, HETZNER_TOKEN: undefined } })
    expect(noToken.code).toBe(3)
    expect(noToken.stderr).toMatch(/HCLOUD_TOKEN/)
  })
})
