import { describe, expect, it } from 'vitest'
import { api, shared, type Who } from './broker-support.js'
import { callJson, createRun } from './runs-support.js'
import { recordWork, sqlTotals } from './security-support.js'

/**
 * Findings 9 and 10 of the security review: run records that grow with results and
 * telemetry.
 *
 * Design (docs/security.md): counters (eventCount, phase, lastEventAt) live apart
 * from bulky results and telemetry, so an append costs the same however large the run's
 * results are; results are stored apart (or refused with 413 by serialized size) and a
 * refused result never loses the run's log or leaves it `running`.
 *
 * The tests count an append's cost (SQL statements, rows, bytes) instead of timing it;
 * the latency ratios are measured by `npm run bench -- broker-fairness`.
 */

/** Results inside the documented bounds (50 files, 100 failures, 4 KiB strings) that serialize to ~2.6 MB. */
function maxedResults() {
  const text = (c: string) => c.repeat(4096)
  return {
    format: 'junit',
    files: Array.from({ length: 50 }, (_, i) => `${i}-${text('f')}`.slice(0, 4096)),
    suites: 1,
    tests: 100,
    failures: 100,
    errors: 0,
    skipped: 0,
    timeSeconds: 1,
    failed: Array.from({ length: 100 }, () => ({
      suite: text('s'),
      name: text('n'),
      classname: text('c'),
      file: text('p'),
      message: text('m'),
      type: text('t'),
      kind: 'failure',
    })),
  }
}

/** One 2-byte stdout append to `runID`, with the Fleet object's SQL work recorded. */
async function appendWork(who: Who, runID: string) {
  const { result, work } = await recordWork(() => api(who, 'POST', `/v1/runs/${runID}/events`, { type: 'stdout', data: 'x\n' }))
  expect(result.status).toBe(201)
  return { ...sqlTotals(work), queries: work.statements.map((s) => s.query) }
}

describe('finding 9: appends do not rewrite bulky run records', () => {
  it('an append to an inflated record reads and writes what an append to a small one does, far below its size', async () => {
    const attacker = shared('inflater@example.com')
    const small = await createRun(attacker)
    const inflated = await createRun(attacker)
    // Both finished alike (same record fields); only the inflated one carries results and telemetry.
    const finishSmall = await api(attacker, 'POST', `/v1/runs/${small.id}/finish`, { exitCode: 1, log: 'x\n' })
    expect(finishSmall.status).toBe(200)
    // Inflate: maxed (in-bounds) results, plus a full telemetry series.
    const finish = await api(attacker, 'POST', `/v1/runs/${inflated.id}/finish`, {
      exitCode: 1,
      log: 'x\n',
      results: { ...maxedResults(), failed: maxedResults().failed.slice(0, 70) },
    })
    expect(finish.status).toBe(200)
    for (let i = 0; i < 60; i++) {
      await api(attacker, 'POST', `/v1/runs/${inflated.id}/telemetry`, {
        telemetry: { capturedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), source: 'ssh-linux', load1: i, memoryPercent: 40 },
      })
    }
    const recordBytes = (await api(attacker, 'GET', `/v1/runs/${inflated.id}`)).text.length
    expect(recordBytes).toBeGreaterThan(1_000_000)

    // Counted, not timed: the work of an append is what made the victim's appends wait behind the attacker's.
    const toSmall = await appendWork(attacker, small.id)
    const toInflated = await appendWork(attacker, inflated.id)
    // The records differ only in counters' digits (durationMs, eventCount).
    expect(
      Math.abs(toInflated.bytes - toSmall.bytes),
      `an append moves ${toSmall.bytes} bytes on a small record, ${toInflated.bytes} on an inflated one`,
    ).toBeLessThanOrEqual(16)
    expect(toInflated.bytes).toBeLessThan(recordBytes / 100)
    expect({ rowsRead: toInflated.rowsRead, rowsWritten: toInflated.rowsWritten }).toEqual({
      rowsRead: toSmall.rowsRead,
      rowsWritten: toSmall.rowsWritten,
    })
    expect(toInflated.queries).toEqual(toSmall.queries)
  }, 120_000)
})

describe('finding 10: in-bounds JUnit results never lose the run', () => {
  it('results over the storage row size are stored or refused with 413, and the run finishes with its log', async () => {
    const who = shared('junit@example.com')
    const run = await createRun(who)
    const finish = await api(who, 'POST', `/v1/runs/${run.id}/finish`, { exitCode: 1, log: 'the whole log\n', results: maxedResults() })
    expect([200, 413]).toContain(finish.status)
    if (finish.status === 413) expect(finish.body).toMatchObject({ error: expect.any(String), message: expect.any(String) })

    const after = await callJson(who, `/v1/runs/${run.id}`)
    expect(after.run.state).toBe('failed')
    expect(after.run.exitCode).toBe(1)
    const log = await api(who, 'GET', `/v1/runs/${run.id}/logs`)
    expect(log.status).toBe(200)
    expect(log.text).toBe('the whole log\n')
    if (finish.status === 200) expect(after.run.results.failed).toHaveLength(100)
  })
})
