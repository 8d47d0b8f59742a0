import { describe, expect, it } from 'vitest'
import { adminCaller, api, nobody, shared } from './broker-support.js'
import { getPage } from './portal-support.js'

/** Tests share one Fleet object: each test reports its own owners and runner IDs. */
let serial = 0
const unique = (prefix: string) => `${prefix}${Date.now().toString(36)}${(serial++).toString(36)}`

const testbox = (id: string) => ({
  id,
  status: 'Ready',
  repo: 'openclaw',
  workflow: '.github/workflows/ci-check-testbox.yml',
  job: 'check',
  ref: 'main',
  createdAt: '2026-05-07T09:00:00Z',
  actionsRunURL: 'https://github.com/openclaw/openclaw/actions/runs/1',
  actionsWorkflowURL: 'https://github.com/openclaw/openclaw/actions/workflows/ci-check-testbox.yml',
  actionsRunStatus: 'completed',
  actionsRunConclusion: 'success',
})

const sync = (who: Parameters<typeof api>[0], body: unknown) => api(who, 'POST', '/v1/runners/sync', body)

describe('external runners', () => {
  it('stores a sync with owner and org, shows it only to its owner, and marks dropped runners missing', async () => {
    const me = shared(`${unique('runner-owner')}@example.com`)
    const id = unique('tbx_01kqyahxh67z6qtwtsdkt5')
    const synced = await sync(me, { provider: ' Blacksmith-Testbox ', runners: [testbox(id)] })
    expect(synced.status).toBe(200)
    expect(synced.body.stale).toEqual([])
    expect(synced.body.runners).toHaveLength(1)
    const runner = synced.body.runners[0]
    expect(runner).toMatchObject({
      ...testbox(id),
      status: 'ready',
      provider: 'blacksmith-testbox',
      owner: me.kind === 'shared' ? me.owner : '',
      org: 'openclaw',
      createdAt: '2026-05-07T09:00:00.000Z',
    })
    expect(runner.stale).toBeUndefined()
    expect(runner.firstSeenAt).toBe(runner.lastSeenAt)
    expect(runner.updatedAt).toBe(runner.lastSeenAt)

    const mine = await api(me, 'GET', '/v1/runners')
    expect(mine.status).toBe(200)
    expect(mine.body.runners).toEqual([runner])

    // Another owner, and the same owner name in another org, see nothing; an admin sees it.
    expect((await api(shared(`${unique('stranger')}@example.com`), 'GET', '/v1/runners')).body.runners).toEqual([])
    const otherOrg = shared(me.kind === 'shared' ? me.owner : '', 'other-org')
    expect((await api(otherOrg, 'GET', '/v1/runners')).body.runners).toEqual([])
    const admin = await api(adminCaller, 'GET', `/v1/runners?provider=blacksmith-testbox&limit=500`)
    expect(admin.body.runners).toContainEqual(runner)
    expect((await api(nobody, 'GET', '/v1/runners')).status).toBe(401)

    // Re-sync without it: missing and stale, first seen kept.
    const again = await sync(me, { provider: 'blacksmith-testbox', runners: [] })
    expect(again.status).toBe(200)
    expect(again.body.runners).toEqual([])
    expect(again.body.stale).toEqual([{ ...runner, status: 'missing', stale: true, updatedAt: again.body.stale[0].updatedAt }])
    // Already stale: not reported as newly stale again.
    expect((await sync(me, { provider: 'blacksmith-testbox', runners: [] })).body.stale).toEqual([])

    expect((await api(me, 'GET', '/v1/runners?stale=true')).body.runners.map((r: { id: string }) => r.id)).toEqual([id])
    expect((await api(me, 'GET', '/v1/runners?stale=false')).body.runners).toEqual([])
    expect((await api(me, 'GET', '/v1/runners?status=missing')).body.runners).toHaveLength(1)
    expect((await api(me, 'GET', '/v1/runners?provider=daytona')).body.runners).toEqual([])

    // Reported again: current, first seen kept from the first report.
    const back = await sync(me, { provider: 'blacksmith-testbox', runners: [testbox(id)] })
    expect(back.body.runners[0].firstSeenAt).toBe(runner.firstSeenAt)
    expect(back.body.runners[0].stale).toBeUndefined()
  })

  it('rejects a bad provider and too many runners; skips bad IDs and duplicates; drops bad fields', async () => {
    const me = shared(`${unique('runner-check')}@example.com`)
    for (const provider of ['', 'x', '-abc', 'has space', 'a'.repeat(65), 42, undefined]) {
      const result = await sync(me, { provider, runners: [] })
      expect(result.status, String(provider)).toBe(400)
      expect(result.body.error).toBe('invalid_provider')
    }
    const many = Array.from({ length: 201 }, (_, i) => ({ id: `tbx_${i}abc` }))
    const tooMany = await sync(me, { provider: 'blacksmith-testbox', runners: many })
    expect(tooMany.status).toBe(400)
    expect(tooMany.body.error).toBe('too_many_runners')
    expect((await sync(me, { provider: 'blacksmith-testbox', runners: many.slice(0, 200) })).status).toBe(200)

    const result = await sync(me, {
      provider: 'islo',
      runners: [
        { id: 'ok_runner1', status: '', repo: '  ', workflow: ` ${'w'.repeat(300)} `, createdAt: '2999-01-01T00:00:00Z' },
        { id: 'ok_runner1', status: 'running' },
        { id: 'no' },
        { id: '-bad-start' },
        { id: 42 },
        { id: 'ok_runner2', actionsRunURL: 'http://github.com/x', actionsWorkflowURL: 'https://example.com/x', createdAt: 'not a time' },
      ],
    })
    expect(result.status).toBe(200)
    expect(result.body.runners.map((r: { id: string }) => r.id)).toEqual(['ok_runner1', 'ok_runner2'])
    const [first, second] = result.body.runners
    expect(first.status).toBe('unknown')
    expect(first.repo).toBeUndefined()
    expect(first.workflow).toBe('w'.repeat(256))
    expect(first.createdAt).toBeUndefined()
    expect(second.actionsRunURL).toBeUndefined()
    expect(second.actionsWorkflowURL).toBeUndefined()
    expect(second.createdAt).toBeUndefined()

    // A sync of one provider leaves the caller's other providers alone.
    expect((await api(me, 'GET', '/v1/runners?provider=blacksmith-testbox&stale=false')).body.runners).toHaveLength(100)
    expect((await api(me, 'GET', '/v1/runners?provider=blacksmith-testbox&limit=1000')).body.runners).toHaveLength(200)
    expect((await sync(me, { provider: 'blacksmith-testbox', runners: 'nope' })).status).toBe(400)
  })

  it('shows runners in the portal grid and on their own page, to their owner and admins only', async () => {
    const owner = `${unique('runner-portal')}@example.com`
    const me = shared(owner)
    const id = unique('tbx_portal')
    await sync(me, {
      provider: 'blacksmith-testbox',
      runners: [{ ...testbox(id), actionsRunConclusion: undefined, actionsRunStatus: 'queued' }],
    })

    const grid = await getPage(me, '/portal')
    expect(grid.status).toBe(200)
    expect(grid.text).toContain('External runners')
    expect(grid.text).toContain(`/portal/runners/blacksmith-testbox/${id}`)
    expect(grid.text).toContain(`crabbox stop --provider blacksmith-testbox ${id}`)
    // Queued since the createdAt above, far over 20 minutes: stuck.
    expect(grid.text).toMatch(/stuck \d/)

    const detail = await getPage(me, `/portal/runners/blacksmith-testbox/${id}`)
    expect(detail.status).toBe(200)
    expect(detail.text).toContain(id)
    expect(detail.text).toContain('.github/workflows/ci-check-testbox.yml')

    const stranger = shared(`${unique('runner-stranger')}@example.com`)
    expect((await getPage(stranger, '/portal')).text).not.toContain(id)
    const hidden = await getPage(stranger, `/portal/runners/blacksmith-testbox/${id}`)
    expect(hidden.status).toBe(404)
    expect(hidden.text).toContain('Runner not found')

    const asAdmin = await getPage(adminCaller, `/portal/runners/blacksmith-testbox/${id}?owner=${encodeURIComponent(owner)}&org=openclaw`)
    expect(asAdmin.status).toBe(200)
    expect(asAdmin.text).toContain(id)
    expect((await getPage(adminCaller, `/portal/runners/blacksmith-testbox/${id}?owner=someone-else`)).status).toBe(404)
  })
})
