import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'

/**
 * `crabbox list --provider blacksmith-testbox` against the stand-in `blacksmith` CLI and
 * `crabbox broker dev` (real workerd): the listed testboxes reach the broker as external
 * runners, `GET /v1/runners` returns them to their owner only, the portal shows them, and a
 * broker that cannot be reached is a warning, never a failed list. Proven against the stand-in only.
 */

const fakeBin = fileURLToPath(new URL('../support/fake-blacksmith', import.meta.url))
const TOKEN = 'e2e-runners-shared'
const OWNER = 'runners@example.com'

describe('blacksmith list syncs external runners to broker dev', () => {
  let broker: BrokerHandle
  let home: CliHome
  let repo: string
  let state: string

  beforeAll(async () => {
    broker = await startBroker({ env: { CRABBOX_SHARED_TOKEN: TOKEN } })
    home = cliHome()
    repo = gitRepo()
    state = mkdtempSync(join(tmpdir(), 'fake-blacksmith-'))
  })

  afterAll(async () => {
    await broker?.stop()
    for (const dir of [home?.dir, repo, state]) if (dir) rmSync(dir, { recursive: true, force: true })
  })

  const boxes = (ids: string[]) =>
    writeFileSync(
      join(state, 'boxes.json'),
      JSON.stringify(ids.map((id) => ({ id, status: 'ready', workflow: '.github/workflows/testbox.yml', job: 'check', ref: 'main' }))),
    )
  const list = (env: Record<string, string | undefined> = {}) =>
    runCli(['list', '--provider', 'blacksmith-testbox', '--json'], {
      home,
      cwd: repo,
      env: {
        CRABBOX_NO_AGENT: '1',
        PATH: `${fakeBin}${delimiter}${process.env.PATH}`,
        FAKE_BLACKSMITH_DIR: state,
        CRABBOX_COORDINATOR: broker.url,
        CRABBOX_COORDINATOR_TOKEN: TOKEN,
        CRABBOX_OWNER: OWNER,
        CRABBOX_ADMIN_TOKEN: undefined,
        ...env,
      },
      timeoutMs: 90_000,
    })
  const get = async (path: string, owner = OWNER) => {
    const response = await fetch(broker.url + path, { headers: { authorization: `Bearer ${TOKEN}`, 'x-crabbox-owner': owner } })
    return { status: response.status, text: await response.text() }
  }

  it('pushes the listed testboxes; the broker and the portal show them; a dropped one becomes missing', async () => {
    boxes(['tbx_e2erunner0001', 'tbx_e2erunner0002'])
    const listed = await list()
    expect(listed.code, listed.stderr).toBe(0)
    expect((JSON.parse(listed.stdout) as { id: string }[]).map((row) => row.id)).toEqual(['tbx_e2erunner0001', 'tbx_e2erunner0002'])
    const calls = readFileSync(join(state, 'args.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as string[])
    expect(calls.at(-1)).toEqual(['testbox', 'list'])

    const runners = JSON.parse((await get('/v1/runners')).text).runners as Record<string, unknown>[]
    expect(runners.map((r) => r.id).sort()).toEqual(['tbx_e2erunner0001', 'tbx_e2erunner0002'])
    expect(runners[0]).toMatchObject({
      provider: 'blacksmith-testbox',
      owner: OWNER,
      status: 'ready',
      repo: 'openclaw/crab',
      workflow: '.github/workflows/testbox.yml',
      job: 'check',
      ref: 'main',
      createdAt: '2026-12-05T23:00:00.000Z',
    })
    expect(JSON.parse((await get('/v1/runners', 'stranger@example.com')).text).runners).toEqual([])

    const portal = await get('/portal')
    expect(portal.status).toBe(200)
    expect(portal.text).toContain('External runners')
    expect(portal.text).toContain('crabbox stop --provider blacksmith-testbox tbx_e2erunner0001')
    const detail = await get('/portal/runners/blacksmith-testbox/tbx_e2erunner0002')
    expect(detail.status).toBe(200)
    expect(detail.text).toContain('openclaw/crab')

    // The next list no longer shows the first testbox: the broker marks it missing.
    boxes(['tbx_e2erunner0002'])
    expect((await list()).code).toBe(0)
    const stale = JSON.parse((await get('/v1/runners?stale=true')).text).runners as Record<string, unknown>[]
    expect(stale).toMatchObject([{ id: 'tbx_e2erunner0001', status: 'missing', stale: true }])
  })

  it('lists anyway when the broker refuses the sync: a warning, exit 0', async () => {
    boxes(['tbx_e2erunner0003'])
    const listed = await list({ CRABBOX_COORDINATOR_TOKEN: 'not-the-token' })
    expect(listed.code, listed.stderr).toBe(0)
    expect((JSON.parse(listed.stdout) as { id: string }[]).map((row) => row.id)).toEqual(['tbx_e2erunner0003'])
    expect(listed.stderr).toContain('could not sync external runners to the broker')
  })
})
