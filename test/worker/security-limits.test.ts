import { afterEach, describe, expect, it } from 'vitest'
import { api, nobody, restoreSettings, shared } from './broker-support.js'
import { openControl } from './control-support.js'
import { callJson, createRun } from './runs-support.js'
import { apiErrorShape, databaseSize, postChunked } from './security-support.js'

/**
 * Findings 1–3 of the security review: memory and storage an attacker can make the
 * broker spend. Each test performs the attack and asserts the fixed behaviour; the
 * numbers below are the broker's documented limits (docs/security.md).
 */

/** The edge stops reading any request body here, whatever its framing. */
const EDGE_BODY_LIMIT = 16 * 1024 * 1024
/** Slack for what is in flight between the edge and the object when a body is refused. */
const PIPE_SLACK = 1024 * 1024
/** What an attacker streams (finding 1 used 100 MB). */
const ATTACK_BYTES = 100 * 1000 * 1000

/** One event carries ≤ 16 KiB of `message` and ≤ 16 KiB of `data`; stored bytes per event stay under this. */
const STORED_BYTES_PER_EVENT = 40 * 1024
/** An event page over HTTP and one `run_events` control frame stay under this, serialized. */
const PAGE_BYTES = 1024 * 1024
/** Per-owner quotas. */
const ACTIVE_RUNS_PER_OWNER = 100
const RUNS_PER_OWNER_PER_HOUR = 200
const STORED_BYTES_PER_OWNER = 64 * 1024 * 1024

afterEach(restoreSettings)

/** Text that JSON escapes six-fold: every character is a control character. */
const escapeHeavy = (bytes: number) => '\u0001'.repeat(bytes)

describe('finding 1: request bodies are bounded whatever their framing', () => {
  it('a 100 MB chunked POST to the unauthenticated login poll is refused without reading it whole', async () => {
    const result = await postChunked(nobody, '/v1/auth/github/poll', ATTACK_BYTES)
    expect(result.status).toBe(413)
    expect(result.body).toMatchObject({ error: 'payload_too_large', message: expect.any(String) })
    expect(result.pulled).toBeLessThanOrEqual(EDGE_BODY_LIMIT + PIPE_SLACK)
  })

  it('a 100 MB chunked POST to an authenticated route is refused at the route limit, not after buffering', async () => {
    const result = await postChunked(shared('chunked@example.com'), '/v1/leases', ATTACK_BYTES)
    expect(result.status).toBe(413)
    expect(result.body).toMatchObject({ error: 'payload_too_large', message: expect.any(String) })
    expect(result.pulled).toBeLessThanOrEqual(EDGE_BODY_LIMIT + PIPE_SLACK)
  })

  it('an error answered before the body is read cancels the upload instead of draining it', async () => {
    // Unknown run: the object answers 404 (or 413) without needing the body.
    const result = await postChunked(shared('drain@example.com'), '/v1/runs/run_000000000bad/events', ATTACK_BYTES)
    expect([404, 413]).toContain(result.status)
    expect(result.body).toMatchObject(apiErrorShape)
    expect(result.pulled).toBeLessThanOrEqual(EDGE_BODY_LIMIT + PIPE_SLACK)
  })

  it('an unauthenticated chunked upload is refused without being drained', async () => {
    const result = await postChunked(nobody, '/v1/leases', ATTACK_BYTES)
    expect(result.status).toBe(401)
    expect(result.pulled).toBeLessThanOrEqual(EDGE_BODY_LIMIT + PIPE_SLACK)
  })
})

describe('finding 2: stored bytes are bounded per event and per owner', () => {
  it('an escape-heavy event stores at most the stated bound', async () => {
    const who = shared('escapes@example.com')
    const run = await createRun(who)
    const events = 20
    const before = await databaseSize()
    for (let i = 0; i < events; i++) {
      await callJson(who, `/v1/runs/${run.id}/events`, {
        body: { type: 'stdout', stream: 'stdout', message: escapeHeavy(16 * 1024), data: escapeHeavy(16 * 1024) },
        status: 201,
      })
    }
    const grown = (await databaseSize()) - before
    expect(grown / events).toBeLessThanOrEqual(STORED_BYTES_PER_EVENT)
  })

  it(`refuses a ${ACTIVE_RUNS_PER_OWNER + 1}th running run of one owner with 429 quota_exceeded; others are unaffected`, async () => {
    const who = shared('many-runs@example.com')
    const statuses: number[] = []
    for (let batch = 0; batch < 3; batch++) {
      const results = await Promise.all(Array.from({ length: 50 }, () => api(who, 'POST', '/v1/runs', { command: ['true'] })))
      statuses.push(...results.map((r) => r.status))
    }
    expect(statuses.filter((s) => s === 201)).toHaveLength(ACTIVE_RUNS_PER_OWNER)
    const refused = await api(who, 'POST', '/v1/runs', { command: ['true'] })
    expect(refused.status).toBe(429)
    expect(refused.body).toMatchObject({ error: 'quota_exceeded', message: expect.any(String) })
    expect((await api(shared('bystander@example.com'), 'POST', '/v1/runs', { command: ['true'] })).status).toBe(201)
  })

  it(`refuses more than ${RUNS_PER_OWNER_PER_HOUR} runs per owner per hour, even when each is finished`, async () => {
    const who = shared('hourly@example.com')
    let created = 0
    let refused: { status: number; body: any } | undefined
    while (!refused && created <= RUNS_PER_OWNER_PER_HOUR) {
      const results = await Promise.all(Array.from({ length: 25 }, () => api(who, 'POST', '/v1/runs', { command: ['true'] })))
      for (const result of results) {
        if (result.status === 201) created++
        else refused ??= result
      }
      await Promise.all(
        results.filter((r) => r.status === 201).map((r) => api(who, 'POST', `/v1/runs/${r.body.run.id}/finish`, { exitCode: 0 })),
      )
    }
    expect(created).toBe(RUNS_PER_OWNER_PER_HOUR)
    expect(refused?.status).toBe(429)
    expect(refused?.body).toMatchObject({ error: 'quota_exceeded', message: expect.any(String) })
  }, 180_000)

  it(`stops an owner at ${STORED_BYTES_PER_OWNER / 1024 / 1024} MiB of stored history with quota_exceeded`, async () => {
    const who = shared('hoarder@example.com')
    const log = 'x'.repeat(8 * 1024 * 1024)
    let refused: { status: number; body: any } | undefined
    for (let i = 0; i < 12 && !refused; i++) {
      const created = await api(who, 'POST', '/v1/runs', { command: ['true'] })
      if (created.status !== 201) {
        refused = created
        break
      }
      await api(who, 'POST', `/v1/runs/${created.body.run.id}/finish`, { exitCode: 0, log })
    }
    expect(refused, 'an owner past the stored-bytes quota can still create runs').toBeDefined()
    expect([413, 429]).toContain(refused!.status)
    expect(refused!.body).toMatchObject({ error: 'quota_exceeded', message: expect.any(String) })
    expect((await api(shared('neighbour@example.com'), 'POST', '/v1/runs', { command: ['true'] })).status).toBe(201)
  }, 180_000)
})

describe('finding 3: event pages and control frames are bounded in bytes', () => {
  async function heavyRun(owner: string, events: number) {
    const who = shared(owner)
    const run = await createRun(who)
    for (let i = 0; i < events; i++) {
      await callJson(who, `/v1/runs/${run.id}/events`, {
        body: { type: 'stdout', stream: 'stdout', message: escapeHeavy(16 * 1024), data: escapeHeavy(16 * 1024) },
        status: 201,
      })
    }
    return { who, run, last: events + 1 }
  }

  it(`an HTTP events page stays under ${PAGE_BYTES} bytes and paging from its last seq reaches every event`, async () => {
    const { who, run, last } = await heavyRun('pages@example.com', 20)
    const seen: number[] = []
    let after = 0
    for (let pages = 0; pages < 100 && !seen.includes(last); pages++) {
      const response = await api(who, 'GET', `/v1/runs/${run.id}/events?after=${after}&limit=500`)
      expect(response.status).toBe(200)
      expect(new TextEncoder().encode(response.text).byteLength).toBeLessThanOrEqual(PAGE_BYTES)
      const events = response.body.events as { seq: number }[]
      expect(events.length).toBeGreaterThan(0)
      seen.push(...events.map((e) => e.seq))
      after = events.at(-1)!.seq
    }
    expect(seen).toEqual(Array.from({ length: last }, (_, i) => i + 1))
  })

  it(`control run_events frames stay under ${PAGE_BYTES} bytes and still deliver every event`, async () => {
    const { who, run, last } = await heavyRun('frames@example.com', 20)
    const client = await openControl(who)
    const raw: string[] = []
    client.ws.addEventListener('message', (event) => {
      if (typeof event.data === 'string') raw.push(event.data)
    })
    try {
      client.send({ type: 'subscribe_run', runID: run.id, after: 0, limit: 500 })
      const seen: number[] = []
      while (!seen.includes(last)) {
        const frame = await client.next((f) => f.type === 'run_events' && f.runID === run.id, 10_000)
        seen.push(...frame.events.map((e: { seq: number }) => e.seq))
        expect(frame.nextSeq).toBe(frame.events.at(-1).seq)
      }
      expect(seen).toEqual(Array.from({ length: last }, (_, i) => i + 1))
      for (const text of raw) expect(new TextEncoder().encode(text).byteLength).toBeLessThanOrEqual(PAGE_BYTES)
    } finally {
      client.close()
    }
  })
})
