import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

const adminToken = 'e2e-admin-token'
const friend = 'friend@example.com'

/**
 * share/unshare, usage, admin and pool list against `crabbox broker dev` with one
 * static pool host. A second owner (same shared token, another X-Crabbox-Owner,
 * a CLI home of their own) may run on the lease only while it is shared with them.
 */
describe('share, usage, admin, pool list', () => {
  const rig = brokerWithStaticHosts({
    token: 'e2e-share-token',
    owner: 'owner@example.com',
    names: ['e2e-share'],
    env: { CRABBOX_ADMIN_TOKEN: adminToken },
  })
  let repo: string
  let friendHome: CliHome
  let leaseId = ''

  const asOwner = (args: string[], env: Record<string, string | undefined> = {}) =>
    runCli(args, { home: rig.home, cwd: repo, env: rig.cliEnv(env) })
  const asFriend = (args: string[]) => runCli(args, { home: friendHome, cwd: repo, env: rig.cliEnv({ CRABBOX_OWNER: friend }) })
  const asAdmin = (args: string[]) => asOwner(args, { CRABBOX_ADMIN_TOKEN: adminToken })

  beforeAll(async () => {
    repo = gitRepo('crabbox-share-', { 'hello.txt': 'hello from the owner\n' })
    friendHome = cliHome()
    const warm = await asOwner(['warmup', '--json'])
    expect(warm.code, warm.stderr).toBe(0)
    leaseId = JSON.parse(warm.stdout).id
  })

  afterAll(() => {
    if (repo) rmSync(repo, { recursive: true, force: true })
    if (friendHome) rmSync(friendHome.dir, { recursive: true, force: true })
  })

  it('a second owner can run on the lease only after share --user, and not after unshare', async () => {
    const before = await asFriend(['run', '--id', leaseId, '--', 'cat', 'hello.txt'])
    expect(before.code, before.stderr).toBe(4)
    expect(before.stderr).toContain(`no active lease ${leaseId}`)

    // Not visible to them at all: exit 4 with the broker's words.
    const sneaky = await asFriend(['share', leaseId, '--user', friend])
    expect(sneaky.code).toBe(4)
    expect(sneaky.stderr).toContain('not found')

    const shared = await asOwner(['share', leaseId, '--user', 'Friend@Example.com', '--json'])
    expect(shared.code, shared.stderr).toBe(0)
    expect(JSON.parse(shared.stdout)).toMatchObject({ leaseID: leaseId, share: { users: { [friend]: 'use' }, updatedBy: rig.owner } })

    const listed = await asOwner(['share', '--id', leaseId, '--list'])
    expect(listed.code, listed.stderr).toBe(0)
    expect(listed.stdout).toMatch(new RegExp(`user\\s+${friend}\\s+use`))

    const during = await asFriend(['run', '--id', leaseId, '--', 'cat', 'hello.txt'])
    expect(during.code, during.stderr).toBe(0)
    expect(during.stdout).toContain('hello from the owner')

    // A user of the lease may not change its sharing: exit 4 with the broker's message.
    const reshare = await asFriend(['share', leaseId, '--user', 'third@example.com'])
    expect(reshare.code).toBe(4)
    expect(reshare.stderr).toContain('lease manage access required')
    const unshareByUser = await asFriend(['unshare', leaseId, '--all'])
    expect(unshareByUser.code).toBe(4)

    const unshared = await asOwner(['unshare', '--id', leaseId, '--user', friend, '--json'])
    expect(unshared.code, unshared.stderr).toBe(0)
    expect(JSON.parse(unshared.stdout).share.users).toEqual({})

    const after = await asFriend(['run', '--id', leaseId, '--', 'cat', 'hello.txt'])
    expect(after.code, after.stderr).toBe(4)
    expect(after.stderr).toContain(`no active lease ${leaseId}`)

    // The org share and --all.
    const org = await asOwner(['share', leaseId, '--org', '--role', 'manage', '--json'])
    expect(JSON.parse(org.stdout).share).toMatchObject({ org: 'manage' })
    const all = await asOwner(['unshare', leaseId, '--all', '--json'])
    expect(all.code, all.stderr).toBe(0)
    expect(JSON.parse(all.stdout).share).toEqual({ users: {} })
  })

  it('usage --json has the month, scope, totals, groups and limits; the table shows spend against the caps', async () => {
    const result = await asOwner(['usage', '--json'])
    expect(result.code, result.stderr).toBe(0)
    const body = JSON.parse(result.stdout)
    expect(body.usage).toMatchObject({ month: expect.stringMatching(/^\d{4}-\d{2}$/), scope: 'user', owner: rig.owner })
    expect(body.usage.leases).toBeGreaterThanOrEqual(1)
    for (const key of ['activeLeases', 'runtimeSeconds', 'estimatedUSD', 'reservedUSD']) expect(typeof body.usage[key]).toBe('number')
    for (const key of ['byOwner', 'byOrg', 'byProvider', 'byServerType']) expect(Array.isArray(body.usage[key])).toBe(true)
    expect(body.usage.byProvider.map((g: { key: string }) => g.key)).toContain('static')
    expect(Object.keys(body.limits).sort()).toEqual(
      [
        'maxActiveLeases',
        'maxActiveLeasesPerOrg',
        'maxActiveLeasesPerOwner',
        'maxMonthlyUSD',
        'maxMonthlyUSDPerOrg',
        'maxMonthlyUSDPerOwner',
      ].sort(),
    )

    const table = await asOwner(['usage'])
    expect(table.code, table.stderr).toBe(0)
    expect(table.stdout).toContain(`scope=user user=${rig.owner}`)
    expect(table.stdout).toMatch(/monthly spend\s+per user\s+\$\d+\.\d{2} \(no cap\)/)
    expect(table.stdout).toMatch(/PROVIDER\s+LEASES/)

    // Without the admin token the broker narrows the view to the caller, and the CLI says so.
    const narrowed = await asOwner(['usage', '--scope', 'all', '--json'])
    expect(narrowed.code, narrowed.stderr).toBe(0)
    expect(JSON.parse(narrowed.stdout).usage).toMatchObject({ scope: 'user', owner: rig.owner })
    expect(narrowed.stderr).toContain('your own usage only')

    const fleet = await asAdmin(['usage', '--scope', 'all', '--json'])
    expect(fleet.code, fleet.stderr).toBe(0)
    expect(JSON.parse(fleet.stdout).usage.scope).toBe('all')
  })

  it('pool list lists the lease like list does; machine cleanup is cleanup', async () => {
    const pool = await asOwner(['pool', 'list', '--json'])
    expect(pool.code, pool.stderr).toBe(0)
    const list = await asOwner(['list', '--json'])
    expect(JSON.parse(pool.stdout)).toEqual(JSON.parse(list.stdout))
    expect(JSON.parse(pool.stdout).map((l: { id: string }) => l.id)).toContain(leaseId)

    // With a broker configured both refuse in the same words (the broker owns expiry).
    const [machine, cleanup] = await Promise.all([asOwner(['machine', 'cleanup']), asOwner(['cleanup'])])
    expect(machine.code).toBe(2)
    expect(machine.code).toBe(cleanup.code)
    expect(machine.stderr).toBe(cleanup.stderr)
  })

  it('admin commands need the admin token (exit 3 naming the setting), and work with it', async () => {
    for (const args of [
      ['admin', 'leases'],
      ['admin', 'release', leaseId],
      ['admin', 'delete', leaseId, '--force'],
    ]) {
      const denied = await asOwner(args)
      expect(denied.code, args.join(' ')).toBe(3)
      expect(denied.stderr).toContain('broker.adminToken')
    }

    const leases = await asAdmin(['admin', 'leases', '--state', 'active', '--owner', rig.owner, '--json'])
    expect(leases.code, leases.stderr).toBe(0)
    expect(JSON.parse(leases.stdout).map((l: { id: string }) => l.id)).toContain(leaseId)
    const table = await asAdmin(['admin', 'leases'])
    expect(table.stdout).toMatch(/^ID\s+SLUG\s+OWNER/)
    expect(table.stdout).toContain(leaseId)

    const released = await asAdmin(['admin', 'release', leaseId, '--json'])
    expect(released.code, released.stderr).toBe(0)
    expect(JSON.parse(released.stdout)).toMatchObject({ id: leaseId, state: 'released' })
    const active = await asAdmin(['admin', 'leases', '--state', 'active', '--json'])
    expect(JSON.parse(active.stdout).map((l: { id: string }) => l.id)).not.toContain(leaseId)
  })

  it('bad input is exit 2 naming the flag and what it expects', async () => {
    const cases: [string[], RegExp][] = [
      [['share', 'x', '--user', friend, '--role', 'owner'], /--role.*use, manage/],
      [['usage', '--month', '2026-13'], /--month[\s\S]*YYYY-MM/],
      [['usage', '--scope', 'team'], /--scope.*user, org, all/],
      [['admin', 'leases', '--limit=-1'], /--limit[\s\S]*at least 1/],
      [['admin', 'leases', '--limit', '0'], /--limit[\s\S]*at least 1/],
      [['admin', 'delete', 'x'], /--force/],
      [['unshare', 'x'], /--user EMAIL, --org or --all/],
    ]
    for (const [args, message] of cases) {
      const result = await asAdmin(args)
      expect(result.code, args.join(' ')).toBe(2)
      expect(result.stderr, args.join(' ')).toMatch(message)
    }
  })
})
