import { describe, expect, it } from 'vitest'
import { api, shared, type Who } from './broker-support.js'
import { callJson, createRun } from './runs-support.js'
import { median, timed } from './security-support.js'

/**
 * Findings 9 and 10 of the security review: run records that grow with results and
 * telemetry.
 *
 * Design (docs/security.md): counters (eventCount, phase, lastEventAt) live apart
 * from bulky results and telemetry, so an append costs the same however large the run's
 * results are; results are stored apart (or refused with 413 by serialized size) and a
 * refused result never loses the run's log or leaves it `running`.
 */

/** A victim's append latency beside an inflated record stays within this factor of the same load on a small record. */
const LATENCY_FACTOR = 3
/** An append to an inflated record costs within this factor of an append to a small one (serial, interleaved). */
const APPEND_FACTOR = 2

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

async function appendLoop(who: Who, runID: string, stop: () => boolean): Promise<void> {
  while (!stop()) await api(who, 'POST', `/v1/runs/${runID}/events`, { type: 'stdout', stream: 'stdout', data: '20 bytes of output\n' })
}

/** The victim's append latencies (`count` of them) while six attacker loops append 20-byte events to `attackerRun`. */
async function victimLatenciesBeside(victim: Who, victimRun: string, attacker: Who, attackerRun: string, count: number): Promise<number[]> {
  let done = false
  const loops = Array.from({ length: 6 }, () => appendLoop(attacker, attackerRun, () => done))
  const times: number[] = []
  try {
    for (let i = 0; i < count; i++)
      times.push(
        await timed(() =>
          callJson(victim, `/v1/runs/${victimRun}/events`, { body: { type: 'stdout', stream: 'stdout', data: 'victim\n' }, status: 201 }),
        ),
      )
  } finally {
    done = true
    await Promise.all(loops)
  }
  return times
}

/**
 * The victim's median append latency beside `small` and beside `inflated`, measured in
 * alternating rounds (small, inflated, inflated, small, ...): the test runtime's own
 * latency drifts upward over a few hundred requests, which must not count as amplification.
 */
async function victimLatencies(attacker: Who, small: string, inflated: string): Promise<{ baseline: number; amplified: number }> {
  const victim = shared('amplified-victim@example.com')
  const victimRun = (await createRun(victim)).id
  const times = { small: [] as number[], inflated: [] as number[] }
  for (let round = 0; round < 4; round++) {
    const order = round % 2 === 0 ? (['small', 'inflated'] as const) : (['inflated', 'small'] as const)
    for (const which of order)
      times[which].push(...(await victimLatenciesBeside(victim, victimRun, attacker, which === 'small' ? small : inflated, 10)))
  }
  return { baseline: median(times.small), amplified: median(times.inflated) }
}

describe('finding 9: appends do not rewrite bulky run records', () => {
  it(`a victim's append latency beside an inflated record stays within ${LATENCY_FACTOR}x of the same load on a small one`, async () => {
    const attacker = shared('inflater@example.com')
    const small = await createRun(attacker)
    const inflated = await createRun(attacker)
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

    // The appender's own cost, one at a time, interleaved (rewriting ~2 MB per append measured 3x here).
    const own = { small: [] as number[], inflated: [] as number[] }
    for (let round = 0; round < 6; round++)
      for (const which of round % 2 === 0 ? (['small', 'inflated'] as const) : (['inflated', 'small'] as const))
        for (let i = 0; i < 10; i++)
          own[which].push(
            await timed(() =>
              api(attacker, 'POST', `/v1/runs/${(which === 'small' ? small : inflated).id}/events`, { type: 'stdout', data: 'x\n' }),
            ),
          )
    expect(
      median(own.inflated) / median(own.small),
      `append ${median(own.small)} ms to a small record, ${median(own.inflated)} ms to an inflated one`,
    ).toBeLessThanOrEqual(APPEND_FACTOR)

    const { baseline, amplified } = await victimLatencies(attacker, small.id, inflated.id)
    expect(
      amplified / baseline,
      `victim append ${baseline.toFixed(1)} ms beside a small record, ${amplified.toFixed(1)} ms beside an inflated one`,
    ).toBeLessThanOrEqual(LATENCY_FACTOR)
  }, 240_000)
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
