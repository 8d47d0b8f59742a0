import { describe, expect, it } from 'vitest'
import { createLease, shared } from './broker-support.js'
import { admin, call, callJson, createRun, friend, peter } from './runs-support.js'

describe('run records', () => {
  it('creating a run records run.started as event 1 with the reference defaults', async () => {
    const run = await createRun(peter, { provider: 'aws', class: 'standard', serverType: 't3.small', command: ['pnpm', 'test', 3] })
    expect(run).toMatchObject({
      leaseID: '',
      owner: 'peter@example.com',
      org: 'openclaw',
      provider: 'aws',
      target: 'linux',
      class: 'standard',
      serverType: 't3.small',
      command: ['pnpm', 'test', '3'],
      state: 'running',
      phase: 'starting',
      logBytes: 0,
      logTruncated: false,
      eventCount: 1,
    })
    expect(run.id).toMatch(/^run_[a-f0-9]{12}$/)
    const { events } = await callJson(peter, `/v1/runs/${run.id}/events`)
    expect(events).toEqual([{ runID: run.id, seq: 1, type: 'run.started', phase: 'starting', createdAt: run.startedAt }])
    expect((await createRun(peter, {})).provider).toBe('hetzner')
  })

  it('takes provider and machine fields from the lease it names, and refuses a lease the caller cannot see', async () => {
    const lease = await createLease(peter, { class: 'standard' })
    const run = await createRun(peter, { leaseID: lease.id, provider: 'aws', serverType: 'c7a.48xlarge', command: ['make'] })
    expect(run).toMatchObject({ leaseID: lease.id, slug: lease.slug, provider: lease.provider, target: lease.target })
    expect(run.serverType).toBe(lease.serverType ?? '')
    const response = await call(friend, '/v1/runs', { body: { leaseID: lease.id } })
    expect(response.status).toBe(404)
    // A lease ID nobody holds is fine: the CLI records the run before it leases.
    expect((await createRun(friend, { leaseID: 'cbx_0000000000ff' })).leaseID).toBe('cbx_0000000000ff')
  })

  it('rejects bad create bodies with a 4xx naming the problem', async () => {
    const cases: [unknown, number, string][] = [
      ['{not json', 400, 'invalid_json'],
      ['', 400, 'invalid_json'],
      [[1, 2], 400, 'invalid_json'],
      [{ leaseID: 'nope' }, 400, 'invalid_lease_id'],
      [{ command: 'npm test' }, 400, 'invalid_request'],
      [{ command: [{ a: 1 }] }, 400, 'invalid_request'],
      [{ provider: 7 }, 400, 'invalid_request'],
      [{ command: ['x'.repeat(70 * 1024)] }, 413, 'payload_too_large'],
    ]
    for (const [body, status, error] of cases) {
      const response = await call(peter, '/v1/runs', { method: 'POST', body })
      expect({ body, status: response.status }).toEqual({ body, status })
      expect(await response.json()).toMatchObject({ error, message: expect.any(String) })
    }
  })

  it("needs a credential and hides other owners' runs behind the same 404 as a missing one", async () => {
    const run = await createRun(peter)
    expect((await call(undefined, `/v1/runs/${run.id}`)).status).toBe(401)
    for (const [method, path] of [
      ['POST', '/v1/runs'],
      ['GET', '/v1/runs'],
      ['GET', `/v1/runs/${run.id}/events`],
      ['POST', `/v1/runs/${run.id}/events`],
      ['GET', `/v1/runs/${run.id}/logs`],
      ['POST', `/v1/runs/${run.id}/telemetry`],
      ['POST', `/v1/runs/${run.id}/finish`],
    ]) {
      const response = await call(undefined, path!, method === 'POST' ? { body: { exitCode: 0, telemetry: { load1: 1 } } } : {})
      expect({ method, path, status: response.status }).toEqual({ method, path, status: 401 })
    }
    expect((await callJson(peter, `/v1/runs/${run.id}`)).run.id).toBe(run.id)
    expect((await callJson(admin, `/v1/runs/${run.id}`)).run.id).toBe(run.id)
    const hidden = await call(friend, `/v1/runs/${run.id}`)
    const missing = await call(friend, '/v1/runs/run_000000000000')
    expect([hidden.status, missing.status]).toEqual([404, 404])
    expect(await hidden.json()).toEqual(await missing.json())
    // Same owner in another org is someone else too (runs are never shared).
    expect((await call(shared('peter@example.com', 'other'), `/v1/runs/${run.id}`)).status).toBe(404)
    for (const path of ['events', 'logs']) expect((await call(friend, `/v1/runs/${run.id}/${path}`)).status).toBe(404)
    expect((await call(friend, `/v1/runs/${run.id}/events`, { body: { type: 'stdout' } })).status).toBe(404)
    expect((await call(friend, `/v1/runs/${run.id}/telemetry`, { body: { telemetry: { load1: 1 } } })).status).toBe(404)
    expect((await call(friend, `/v1/runs/${run.id}/finish`, { body: { exitCode: 0, log: 'mine' } })).status).toBe(404)
    // The refused finish changed nothing.
    expect((await callJson(peter, `/v1/runs/${run.id}`)).run.state).toBe('running')
    expect(await (await call(peter, `/v1/runs/${run.id}/logs`)).text()).toBe('')
    expect((await call(peter, '/v1/runs/not-a-run')).status).toBe(400)
  })
})

describe('run listing', () => {
  it('lists newest first in bounded pages, and non-admins only ever see their own runs', async () => {
    const owner = shared(`lister-${crypto.randomUUID()}@example.com`, 'listing')
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await createRun(owner, { leaseID: i % 2 ? 'cbx_00000000000a' : '' })).id)
    await createRun(friend)

    const pages: string[][] = []
    let cursor: string | undefined
    do {
      const page = await callJson(owner, `/v1/runs?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      pages.push(page.runs.map((r: { id: string }) => r.id))
      cursor = page.nextCursor
    } while (cursor)
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
    expect(pages.flat()).toEqual([...ids].reverse())

    // owner/org query parameters cannot widen a non-admin's view.
    const widened = await callJson(owner, `/v1/runs?owner=${encodeURIComponent('friend@example.com')}&org=openclaw`)
    expect(widened.runs.map((r: { id: string }) => r.id)).toEqual([...ids].reverse())
    const byLease = await callJson(owner, '/v1/runs?leaseID=cbx_00000000000a')
    expect(byLease.runs).toHaveLength(2)
    expect((await callJson(owner, '/v1/runs?state=succeeded')).runs).toEqual([])

    const adminView = await callJson(admin, `/v1/runs?owner=${encodeURIComponent((owner as { owner: string }).owner)}&limit=500`)
    expect(adminView.runs.map((r: { id: string }) => r.id)).toEqual([...ids].reverse())
    const everyone = await callJson(admin, '/v1/runs?limit=1000')
    expect(everyone.runs.length).toBeLessThanOrEqual(500)
    expect(new Set(everyone.runs.map((r: { owner: string }) => r.owner)).size).toBeGreaterThan(1)
  })

  it('rejects bad list queries', async () => {
    for (const query of ['limit=abc', 'limit=0', 'limit=-1', 'state=exploded', 'cursor=%25%25%25', 'cursor=bm9wZQ']) {
      const response = await call(peter, `/v1/runs?${query}`)
      expect({ query, status: response.status }).toEqual({ query, status: 400 })
      expect(await response.json()).toMatchObject({ error: expect.any(String), message: expect.any(String) })
    }
  })
})

describe('run events', () => {
  it('numbers appended events and folds them into the run summary', async () => {
    const run = await createRun(peter, { provider: 'aws', command: ['pnpm', 'test'] })
    const leased = await callJson(peter, `/v1/runs/${run.id}/events`, {
      body: {
        type: 'lease.created',
        leaseID: 'cbx_000000000001',
        slug: 'blue-lobster',
        provider: 'aws',
        class: 'standard',
        serverType: 't3.small',
      },
      status: 201,
    })
    expect(leased.event).toMatchObject({ runID: run.id, seq: 2, type: 'lease.created', leaseID: 'cbx_000000000001', slug: 'blue-lobster' })
    const out = await callJson(peter, `/v1/runs/${run.id}/events`, {
      body: { type: 'stdout', stream: 'stdout', data: 'ok\n' },
      status: 201,
    })
    expect(out.event.seq).toBe(3)
    const after = (await callJson(peter, `/v1/runs/${run.id}`)).run
    expect(after).toMatchObject({
      leaseID: 'cbx_000000000001',
      slug: 'blue-lobster',
      serverType: 't3.small',
      phase: 'command',
      eventCount: 3,
    })

    await callJson(peter, `/v1/runs/${run.id}/finish`, { body: { exitCode: 0 } })
    const page = await callJson(peter, `/v1/runs/${run.id}/events?after=1&limit=2`)
    expect(page.events.map((e: { seq: number }) => e.seq)).toEqual([2, 3])
    const all = await callJson(peter, `/v1/runs/${run.id}/events`)
    expect(all.events.map((e: { type: string }) => e.type)).toEqual(['run.started', 'lease.created', 'stdout', 'command.finished'])
  })

  it('bounds event fields the way the reference does', async () => {
    const run = await createRun(peter)
    const big = 'é'.repeat(9000) // 18,000 UTF-8 bytes
    const { event } = await callJson(peter, `/v1/runs/${run.id}/events`, {
      body: {
        type: '  ',
        stream: 'stdin',
        data: big,
        message: big,
        leaseID: 'cbx_bad',
        provider: 'Not A Provider',
        target: 'plan9',
        exitCode: null,
        extra: 'ignored',
      },
      status: 201,
    })
    expect(event.type).toBe('event')
    expect(new TextEncoder().encode(event.data).byteLength).toBe(16_384)
    expect(event.data).toBe('é'.repeat(8192))
    expect(event.message).toBe(event.data)
    for (const key of ['stream', 'leaseID', 'provider', 'target', 'exitCode', 'extra']) expect(event).not.toHaveProperty(key)
    // run.failed ends the run.
    await callJson(peter, `/v1/runs/${run.id}/events`, { body: { type: 'run.failed', message: 'boom' }, status: 201 })
    expect((await callJson(peter, `/v1/runs/${run.id}`)).run).toMatchObject({
      state: 'failed',
      phase: 'failed',
      endedAt: expect.any(String),
    })
  })

  it('rejects bad event bodies and queries without touching the run', async () => {
    const run = await createRun(peter)
    const bad: [unknown, number][] = [
      ['nope', 400],
      [{ type: 5 }, 400],
      [{ data: ['x'] }, 400],
      [{ exitCode: 'zero' }, 400],
      [{ data: 'x'.repeat(300 * 1024) }, 413],
    ]
    for (const [body, status] of bad) {
      const response = await call(peter, `/v1/runs/${run.id}/events`, { method: 'POST', body })
      expect({ body: String(body).slice(0, 20), status: response.status }).toEqual({ body: String(body).slice(0, 20), status })
    }
    for (const query of ['after=-1', 'after=x', 'limit=0', 'limit=many']) {
      expect((await call(peter, `/v1/runs/${run.id}/events?${query}`)).status).toBe(400)
    }
    expect((await callJson(peter, `/v1/runs/${run.id}`)).run.eventCount).toBe(1)
    expect((await call(peter, '/v1/runs/run_000000000000/events', { body: { type: 'x' } })).status).toBe(404)
  })

  it('concurrent appends get distinct sequence numbers with no gap', async () => {
    const run = await createRun(peter)
    const posted = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        i % 3 === 2
          ? callJson(peter, `/v1/runs/${run.id}/telemetry`, {
              body: { telemetry: { load1: i, capturedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() } },
            }).then(() => undefined)
          : callJson(peter, `/v1/runs/${run.id}/events`, {
              body: { type: 'stdout', stream: 'stdout', data: `line ${i}\n` },
              status: 201,
            }).then((r) => r.event.seq as number),
      ),
    )
    const seqs = posted.filter((s): s is number => s !== undefined).sort((a, b) => a - b)
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 2))
    const { events } = await callJson(peter, `/v1/runs/${run.id}/events`)
    expect(events.map((e: { seq: number }) => e.seq)).toEqual(Array.from({ length: 41 }, (_, i) => i + 1))
    expect(new Set(events.map((e: { data?: string }) => e.data)).size).toBe(41)
    const after = (await callJson(peter, `/v1/runs/${run.id}`)).run
    expect(after.eventCount).toBe(41)
    expect(after.telemetry.samples).toHaveLength(20)
  })
})

describe('run telemetry', () => {
  it('keeps sanitised samples, the first as start, at most 60', async () => {
    const run = await createRun(peter)
    const first = await callJson(peter, `/v1/runs/${run.id}/telemetry`, {
      body: {
        telemetry: { capturedAt: '2026-05-01T00:00:10Z', source: 'ssh-linux', load1: 0.4, memoryPercent: 400, diskUsedBytes: -1, bogus: 1 },
      },
    })
    expect(first.run.telemetry.start).toEqual({
      capturedAt: '2026-05-01T00:00:10.000Z',
      source: 'ssh-linux',
      load1: 0.4,
      memoryPercent: 100,
    })
    // Arrival order does not matter: samples are kept sorted by capturedAt.
    await Promise.all(
      Array.from({ length: 70 }, (_, i) =>
        callJson(peter, `/v1/runs/${run.id}/telemetry`, {
          body: { telemetry: { capturedAt: new Date(Date.UTC(2026, 4, 1, 1, 0, i)).toISOString(), load1: i } },
        }),
      ),
    )
    const { run: after } = await callJson(peter, `/v1/runs/${run.id}`)
    expect(after.telemetry.samples).toHaveLength(60)
    expect(after.telemetry.samples.at(-1).load1).toBe(69)
    expect(after.telemetry.samples[0].load1).toBe(10)
    expect(after.telemetry.start.load1).toBe(0.4)

    for (const body of [{ telemetry: { source: 'x' } }, { telemetry: 'load1=1' }, {}, { telemetry: { load1: 'high' } }]) {
      const response = await call(peter, `/v1/runs/${run.id}/telemetry`, { body })
      expect(response.status).toBe(400)
    }
    expect((await callJson(peter, `/v1/runs/${run.id}`)).run.telemetry.samples).toHaveLength(60)
  })
})

describe('finishing a run', () => {
  it('records the exit code, results, timings and a command.finished event', async () => {
    const run = await createRun(peter)
    const { run: done } = await callJson(peter, `/v1/runs/${run.id}/finish`, {
      body: {
        exitCode: 0,
        syncMs: 12,
        commandMs: 34,
        log: 'ok\n',
        telemetry: { start: { load1: 0.4, capturedAt: '2026-05-01T00:00:10Z' }, end: { load1: 1.2, capturedAt: '2026-05-01T00:01:10Z' } },
        results: {
          format: 'junit',
          files: ['junit.xml'],
          suites: 1,
          tests: 2,
          failures: 1,
          errors: 0,
          skipped: 0,
          timeSeconds: 1.2,
          failed: [{ suite: 'pkg', name: 'fails', kind: 'failure' }],
        },
      },
    })
    expect(done).toMatchObject({
      state: 'succeeded',
      phase: 'succeeded',
      exitCode: 0,
      syncMs: 12,
      commandMs: 34,
      logBytes: 3,
      logTruncated: false,
      eventCount: 2,
    })
    expect(done.results.tests).toBe(2)
    expect(done.telemetry.end.load1).toBe(1.2)
    expect(done.durationMs).toBeGreaterThanOrEqual(0)
    const { events } = await callJson(peter, `/v1/runs/${run.id}/events?after=1`)
    expect(events).toEqual([expect.objectContaining({ seq: 2, type: 'command.finished', phase: 'succeeded', exitCode: 0 })])
    expect(await (await call(peter, `/v1/runs/${run.id}/logs`)).text()).toBe('ok\n')

    // Finishing again overwrites: missing exit code means failure.
    const { run: again } = await callJson(peter, `/v1/runs/${run.id}/finish`, {
      body: { log: 'second\n', results: { files: null, failed: null } },
    })
    expect(again).toMatchObject({ state: 'failed', exitCode: 1, eventCount: 3 })
    expect(again.results).toMatchObject({ files: [], failed: [] })
    expect(await (await call(peter, `/v1/runs/${run.id}/logs`)).text()).toBe('second\n')
  })

  it('bounds results: 50 files, 100 failures, 4 KiB strings', async () => {
    const run = await createRun(peter)
    const failed = Array.from({ length: 150 }, (_, i) => ({ suite: 's', name: `t${i}`, kind: 'failure', message: 'm'.repeat(5000) }))
    const files = Array.from({ length: 80 }, (_, i) => `f${i}.xml`)
    const { run: done } = await callJson(peter, `/v1/runs/${run.id}/finish`, {
      body: { exitCode: 1, results: { format: 'junit', files, failed, tests: 150, failures: 150 } },
    })
    expect(done.results.files).toHaveLength(50)
    expect(done.results.failed).toHaveLength(100)
    expect(done.results.failed[0].message).toHaveLength(4096)
  })

  it('reassembles chunked logs, prefers chunks over the tail, and keeps only the last 8 MiB', async () => {
    const run = await createRun(peter)
    const a = `${'a'.repeat(70_000)}A-END\n`
    const b = `${'b'.repeat(70_000)}B-END\n`
    const { run: done } = await callJson(peter, `/v1/runs/${run.id}/finish`, {
      body: { exitCode: 2, logChunks: [a, b], log: 'fallback tail only\n' },
    })
    expect(done).toMatchObject({ state: 'failed', logBytes: a.length + b.length, logTruncated: false })
    const log = await (await call(peter, `/v1/runs/${run.id}/logs`)).text()
    expect(log).toBe(a + b)

    const big = await createRun(peter)
    const line = 'ü'.repeat(511) + '\n' // 1023 bytes
    const lines = Math.ceil((9 * 1024 * 1024) / 1023)
    const raw = `FIRST-LINE\n${line.repeat(lines)}LAST-LINE\n`
    const response = await call(peter, `/v1/runs/${big.id}/logs`)
    expect(response.headers.get('content-type')).toBe('text/plain; charset=utf-8')
    const { run: bigDone } = await callJson(peter, `/v1/runs/${big.id}/finish`, { body: { exitCode: 0, logChunks: [raw] } })
    expect(bigDone.logTruncated).toBe(true)
    expect(bigDone.logBytes).toBe(8 * 1024 * 1024)
    const kept = await (await call(peter, `/v1/runs/${big.id}/logs`)).text()
    expect(kept.endsWith('LAST-LINE\n')).toBe(true)
    expect(kept).not.toContain('FIRST-LINE')
    expect(new TextEncoder().encode(kept).byteLength).toBeLessThanOrEqual(8 * 1024 * 1024)
    expect(new TextEncoder().encode(kept).byteLength).toBeGreaterThan(8 * 1024 * 1024 - 4)
    // A client-side truncation flag is kept even for a small log.
    const flagged = await createRun(peter)
    expect(
      (await callJson(peter, `/v1/runs/${flagged.id}/finish`, { body: { exitCode: 0, log: 'tail', logTruncated: true } })).run.logTruncated,
    ).toBe(true)
  })

  it('rejects bad finish bodies without touching the run', async () => {
    const run = await createRun(peter)
    for (const body of [
      '{',
      { exitCode: 'zero' },
      { logChunks: 'abc' },
      { logChunks: [1] },
      { logTruncated: 'yes' },
      { results: { tests: 'two' } },
      { telemetry: [] },
    ]) {
      const response = await call(peter, `/v1/runs/${run.id}/finish`, { method: 'POST', body })
      expect({ body, status: response.status }).toEqual({ body, status: 400 })
    }
    expect((await callJson(peter, `/v1/runs/${run.id}`)).run).toMatchObject({ state: 'running', eventCount: 1 })
  })
})
