import { runDurableObjectAlarm } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { appendRunEvent, createRun, finishRun, pruneRuns, runRetentionDays } from '../../worker/fleet/runs.js'
import { fleetStub, inFleet } from './broker-support.js'
import { callJson, createRun as createRunOverHttp, peter } from './runs-support.js'

const DAY = 86_400_000
const who = { owner: 'retention@example.com', org: 'retention', admin: false, claimed: true }

/** Seeds `count` runs that started `ageDays` ago, each with a few events and a two-chunk log. */
function seed(count: number, ageDays: number): Promise<string[]> {
  return inFleet(({ storage }) => {
    const then = new Date(Date.now() - ageDays * DAY)
    const ids: string[] = []
    for (let i = 0; i < count; i++) {
      const { run } = createRun(storage, who, { leaseID: '', command: ['make'] }, undefined, then)
      for (let e = 0; e < 3; e++) appendRunEvent(storage, who, run.id, { type: 'stdout', stream: 'stdout', data: `line ${e}\n` }, then)
      finishRun(storage, who, run.id, { exitCode: 0, log: '', logChunks: ['x'.repeat(70_000)], logTruncated: false }, then)
      ids.push(run.id)
    }
    return ids
  })
}

function rowsOf(ids: string[]): Promise<{ runs: number; events: number; logs: number }> {
  return inFleet(({ storage }) => {
    const marks = ids.map(() => '?').join(',')
    const count = (table: string, column: string) =>
      storage.one<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table} WHERE ${column} IN (${marks})`, ...ids)!.n
    return { runs: count('runs', 'id'), events: count('run_events', 'run_id'), logs: count('run_logs', 'run_id') }
  })
}

describe('run retention', () => {
  it('prunes old runs with their events and logs in bounded, repeatable batches', async () => {
    const old = await seed(6, 45)
    const fresh = await seed(2, 1)
    // Each old run holds 1 run row + 5 events + 2 log chunks = 8 rows.
    expect(await rowsOf(old)).toEqual({ runs: 6, events: 30, logs: 12 })

    const before = new Date(Date.now() - 30 * DAY)
    const passes: { runs: number; rows: number; more: boolean }[] = []
    for (let i = 0; i < 20; i++) {
      const result = await inFleet(({ storage }) => pruneRuns(storage, { before, maxRows: 10 }))
      passes.push(result)
      expect(result.rows).toBeLessThanOrEqual(10)
      if (!result.more) break
    }
    expect(passes.length).toBeGreaterThan(4)
    expect(passes.at(-1)!.more).toBe(false)
    expect(passes.reduce((sum, p) => sum + p.runs, 0)).toBeGreaterThanOrEqual(6)
    expect(await rowsOf(old)).toEqual({ runs: 0, events: 0, logs: 0 })
    expect(await rowsOf(fresh)).toEqual({ runs: 2, events: 10, logs: 4 })

    // Repeating (an alarm delivered twice) changes nothing and finds nothing.
    const again = await inFleet(({ storage }) => pruneRuns(storage, { before, maxRows: 10 }))
    expect(again).toMatchObject({ runs: 0, rows: 0, more: false })
    expect(await rowsOf(fresh)).toEqual({ runs: 2, events: 10, logs: 4 })
    const { runs } = await callJson(
      { kind: 'admin', owner: 'ops@example.com', org: 'openclaw' },
      `/v1/runs?owner=${encodeURIComponent(who.owner)}&org=${who.org}`,
    )
    expect(runs.map((r: { id: string }) => r.id).sort()).toEqual([...fresh].sort())
  })

  it('the alarm prunes through the hook, keeping the configured number of days', async () => {
    expect(runRetentionDays({})).toBe(30)
    expect(runRetentionDays({ CRABBOX_RUN_RETENTION_DAYS: '7' })).toBe(7)
    expect(runRetentionDays({ CRABBOX_RUN_RETENTION_DAYS: 'soon' })).toBe(30)
    const old = await seed(2, 31)
    // Creating a run over HTTP asks the object to wake by the time it ages out.
    await createRunOverHttp(peter)
    expect(await inFleet((_deps, state) => state.storage.getAlarm())).not.toBeNull()
    await inFleet((_deps, state) => state.storage.setAlarm(Date.now()))
    await runDurableObjectAlarm(fleetStub())
    expect(await rowsOf(old)).toEqual({ runs: 0, events: 0, logs: 0 })
  })
})
