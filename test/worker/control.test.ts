import { abortAllDurableObjects, env, runInDurableObject } from 'cloudflare:test'
import { afterEach, describe, expect, it } from 'vitest'
import { identityHeaders } from '../../worker/auth/identity.js'
import { FleetDurableObject } from '../../worker/fleet/fleet.js'
import { api, createLease, fleetStub, inFleet } from './broker-support.js'
import { collectSeqs, openControl, type ControlClient } from './control-support.js'
import { admin, call, callJson, createRun, friend, peter } from './runs-support.js'

const open: ControlClient[] = []
async function connect(...args: Parameters<typeof openControl>): Promise<ControlClient> {
  const client = await openControl(...args)
  open.push(client)
  return client
}
afterEach(() => {
  for (const client of open.splice(0)) {
    try {
      client.close()
    } catch {
      // already closed
    }
  }
})

const append = (runID: string, data: string) =>
  callJson(peter, `/v1/runs/${runID}/events`, { body: { type: 'stdout', stream: 'stdout', data }, status: 201 })

describe('control socket handshake', () => {
  it('greets with hello (protocol 1, a fresh client ID) and answers ping with pong', async () => {
    const a = await connect(peter)
    const b = await connect(peter)
    expect(a.hello).toEqual({ type: 'hello', protocol: 1, clientID: expect.stringMatching(/^[0-9a-f-]{36}$/) })
    expect(b.hello.clientID).not.toBe(a.hello.clientID)
    a.send({ type: 'ping' })
    expect(await a.next()).toEqual({ type: 'pong' })
  })

  it('answers 426 to anything but a WebSocket upgrade, and 401 without a credential', async () => {
    for (const method of ['GET', 'POST']) {
      const response = await call(peter, '/v1/control', { method })
      expect(response.status).toBe(426)
      expect(await response.json()).toMatchObject({ error: 'websocket_required' })
    }
    const response = await call(undefined, '/v1/control')
    expect(response.status).toBe(401)
    await expect(openControl({ kind: 'none' })).rejects.toThrow(/401/)
  })
})

describe('run subscriptions', () => {
  it('sends the backlog after `after`, then each new event as it is appended', async () => {
    const run = await createRun(peter)
    await append(run.id, 'one\n')
    await append(run.id, 'two\n')
    const client = await connect(peter)
    client.send({ type: 'subscribe_run', runID: run.id, after: 1 })
    const backlog = await client.next()
    expect(backlog).toMatchObject({ type: 'run_events', runID: run.id, nextSeq: 3 })
    expect(backlog.events.map((e: { data: string }) => e.data)).toEqual(['one\n', 'two\n'])

    await append(run.id, 'three\n')
    const live = await client.next()
    expect(live).toMatchObject({ type: 'run_events', runID: run.id, nextSeq: 4, events: [{ seq: 4, type: 'stdout', data: 'three\n' }] })
    await callJson(peter, `/v1/runs/${run.id}/finish`, { body: { exitCode: 0 } })
    expect(await client.next()).toMatchObject({ nextSeq: 5, events: [{ seq: 5, type: 'command.finished', exitCode: 0 }] })
    // An up-to-date subscription gets an empty page with the cursor echoed.
    client.send({ type: 'subscribe_run', runID: run.id, after: 5 })
    expect(await client.next()).toEqual({ type: 'run_events', runID: run.id, events: [], nextSeq: 5 })
  })

  it('a small limit pages the backlog but never leaves a gap', async () => {
    const run = await createRun(peter)
    for (let i = 0; i < 7; i++) await append(run.id, `${i}\n`)
    const client = await connect(peter)
    client.send({ type: 'subscribe_run', runID: run.id, after: 0, limit: 3 })
    const first = await client.next()
    expect(first.events.map((e: { seq: number }) => e.seq)).toEqual([1, 2, 3])
    expect(await collectSeqs(client, run.id, 8)).toEqual([4, 5, 6, 7, 8])
  })

  it('events appended while a client subscribes arrive exactly once, in order (no backfill gap)', async () => {
    const run = await createRun(peter)
    const client = await connect(peter)
    const total = 40
    // Appends race the subscription: some land before its backlog read, some after.
    const appends = Array.from({ length: total }, (_, i) => append(run.id, `${i}\n`))
    await Promise.race(appends)
    client.send({ type: 'subscribe_run', runID: run.id, after: 0, limit: 2 })
    await Promise.all(appends)
    const seqs = await collectSeqs(client, run.id, total + 1)
    expect(seqs).toEqual(Array.from({ length: total + 1 }, (_, i) => i + 1))
    await append(run.id, 'after\n')
    expect((await client.next()).events.map((e: { seq: number }) => e.seq)).toEqual([total + 2])
    expect(client.pending()).toEqual([])
  })

  it('only pushes to sockets that may see the run: owner and admin, not another owner', async () => {
    const run = await createRun(peter)
    const stranger = await connect(friend)
    stranger.send({ type: 'subscribe_run', runID: run.id })
    expect(await stranger.next()).toEqual({ type: 'error', code: 'not_found', message: 'run not found' })
    stranger.send({ type: 'subscribe_run', runID: 'run_000000000000' })
    expect(await stranger.next()).toMatchObject({ type: 'error', code: 'not_found' })
    // An ack cannot create a subscription to someone else's run.
    stranger.send({ type: 'ack', runID: run.id, seq: 0 })
    const operator = await connect(admin)
    operator.send({ type: 'subscribe_run', runID: run.id })
    expect((await operator.next()).events).toHaveLength(1)
    await append(run.id, 'secret\n')
    expect((await operator.next()).events[0].data).toBe('secret\n')
    stranger.send({ type: 'ping' })
    expect(await stranger.next()).toEqual({ type: 'pong' })
    expect(stranger.pending()).toEqual([])
  })

  it('caps one socket at 32 subscribed runs, with a clear error for the next', async () => {
    const runs = await Promise.all(Array.from({ length: 33 }, () => createRun(peter)))
    const client = await connect(peter)
    for (const run of runs.slice(0, 32)) {
      client.send({ type: 'subscribe_run', runID: run.id })
      expect((await client.next()).type).toBe('run_events')
    }
    client.send({ type: 'subscribe_run', runID: runs[32].id })
    expect(await client.next()).toMatchObject({ type: 'error', code: 'invalid_message', message: expect.stringContaining('32') })
    // Resubscribing to one it already has is still fine.
    client.send({ type: 'subscribe_run', runID: runs[0].id, after: 1 })
    expect(await client.next()).toEqual({ type: 'run_events', runID: runs[0].id, events: [], nextSeq: 1 })
  })

  it('ack moves the cursor forward only: skipped events are not pushed, earlier ones are not repeated', async () => {
    const run = await createRun(peter)
    const client = await connect(peter)
    client.send({ type: 'subscribe_run', runID: run.id })
    expect((await client.next()).nextSeq).toBe(1)
    // The client says it already has up to seq 3 (say, read over HTTP).
    client.send({ type: 'ack', runID: run.id, seq: 3 })
    client.send({ type: 'ack', runID: run.id, seq: 0 })
    await append(run.id, 'a\n')
    await append(run.id, 'b\n')
    await append(run.id, 'c\n')
    const frame = await client.next()
    expect(frame.events.map((e: { seq: number }) => e.seq)).toEqual([4])
    client.send({ type: 'ping' })
    expect(await client.next()).toEqual({ type: 'pong' })
  })
})

describe('heartbeats over the control socket', () => {
  it('extends a live lease like the HTTP heartbeat, and answers ok:false for unknown or ended leases', async () => {
    const lease = await createLease(peter, { idleTimeoutSeconds: 600, ttlSeconds: 3600 })
    const client = await connect(peter)
    client.send({ type: 'heartbeat', leaseID: lease.slug, idleTimeoutSeconds: 900, telemetry: { load1: 0.77 } })
    const beat = await client.next()
    expect(beat).toEqual({ type: 'heartbeat', leaseID: lease.id, ok: true, expiresAt: expect.any(String) })
    const after = (await api(peter, 'GET', `/v1/leases/${lease.id}`)).body.lease
    expect(after).toMatchObject({ idleTimeoutSeconds: 900, expiresAt: beat.expiresAt, telemetry: { load1: 0.77 } })

    client.send({ type: 'heartbeat', leaseID: 'cbx_0000000000ee' })
    expect(await client.next()).toEqual({ type: 'heartbeat', leaseID: 'cbx_0000000000ee', ok: false, error: 'not_found' })
    const other = await connect(friend)
    other.send({ type: 'heartbeat', leaseID: lease.id })
    expect(await other.next()).toMatchObject({ ok: false, error: 'not_found' })

    expect((await api(peter, 'POST', `/v1/leases/${lease.id}/release`, {})).status).toBe(200)
    client.send({ type: 'heartbeat', leaseID: lease.id })
    expect(await client.next()).toEqual({ type: 'heartbeat', leaseID: lease.id, ok: false, error: 'lease_not_active' })
    expect((await api(peter, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('released')
  })

  it('never revives an expired lease', async () => {
    const lease = await createLease(peter, { ttlSeconds: 60, idleTimeoutSeconds: 60 })
    // Back-dated past its expiry (the alarm has not run yet) instead of waiting for the TTL.
    const expiredAt = '2000-01-01T00:00:00.000Z'
    await inFleet((deps) => {
      deps.storage.run(
        "UPDATE leases SET expires_at = ?, record = json_set(record, '$.expiresAt', ?) WHERE id = ?",
        expiredAt,
        expiredAt,
        lease.id,
      )
    })
    const client = await connect(peter)
    client.send({ type: 'heartbeat', leaseID: lease.id, idleTimeoutSeconds: 3600 })
    expect(await client.next()).toEqual({ type: 'heartbeat', leaseID: lease.id, ok: false, error: 'lease_not_active' })
    const after = (await api(peter, 'GET', `/v1/leases/${lease.id}`)).body.lease
    expect(after.expiresAt).toBe(expiredAt)
    expect(after.idleTimeoutSeconds).toBe(60)
  })
})

describe('bad frames', () => {
  it('1,000 malformed frames each get an error, and the socket and its subscriptions are unchanged', async () => {
    const run = await createRun(peter)
    const client = await connect(peter)
    client.send({ type: 'subscribe_run', runID: run.id })
    expect((await client.next()).nextSeq).toBe(1)

    const bad: [unknown, string][] = [
      [new Uint8Array([1, 2, 3]), 'invalid_message'],
      ['{"type":', 'invalid_json'],
      ['', 'invalid_json'],
      ['null', 'unknown_type'],
      ['[1,2]', 'unknown_type'],
      [{ type: 'launch_missiles' }, 'unknown_type'],
      [{ noType: true }, 'unknown_type'],
      [{ type: 'subscribe_run' }, 'invalid_message'],
      [{ type: 'subscribe_run', runID: run.id, after: -1 }, 'invalid_message'],
      [{ type: 'subscribe_run', runID: run.id, limit: 'all' }, 'invalid_message'],
      [{ type: 'ack', runID: run.id, seq: 'x' }, 'invalid_message'],
      [{ type: 'ack', runID: run.id, seq: -5 }, 'invalid_message'],
      [{ type: 'heartbeat' }, 'invalid_message'],
      [{ type: 'heartbeat', leaseID: 7 }, 'invalid_message'],
      [{ type: 'heartbeat', leaseID: 'x'.repeat(500) }, 'invalid_message'],
      [{ type: 'ping', extra: 'fine' }, 'pong'],
    ]
    const expected: string[] = []
    for (let i = 0; i < 1000; i++) {
      const [frame, code] = bad[i % bad.length]
      if (code === 'pong') continue
      client.ws.send(frame instanceof Uint8Array ? frame : typeof frame === 'string' ? frame : JSON.stringify(frame))
      expected.push(code)
    }
    const codes: string[] = []
    while (codes.length < expected.length) {
      const frame = await client.next()
      expect(frame.type).toBe('error')
      expect(frame.message).toEqual(expect.any(String))
      codes.push(frame.code)
    }
    // Each bad frame got exactly one error. (Sorted: the local runtime's edge hop can reorder
    // client→server frames slightly; server→client order is what the protocol relies on.)
    expect(codes.sort()).toEqual(expected.sort())

    client.send({ type: 'ping' })
    expect(await client.next()).toEqual({ type: 'pong' })
    expect((await callJson(peter, `/v1/runs/${run.id}`)).run.eventCount).toBe(1)
    await append(run.id, 'still here\n')
    expect(await client.next()).toMatchObject({ nextSeq: 2, events: [{ seq: 2, data: 'still here\n' }] })
    expect(client.pending()).toEqual([])
  })
})

describe('hibernation', () => {
  it('a fresh object instance (what waking from hibernation creates) serves subscriptions made by the old one', async () => {
    const run = await createRun(peter)
    const client = await connect(peter)
    client.send({ type: 'subscribe_run', runID: run.id })
    expect((await client.next()).nextSeq).toBe(1)
    // Nothing the old instance holds in memory is needed: a new instance over the same
    // state finds the socket, its owner and its cursor in the serialized attachment.
    await runInDurableObject(fleetStub(), async (_old: FleetDurableObject, state) => {
      const fresh = new FleetDurableObject(state, env as never)
      const headers = {
        ...identityHeaders({ owner: 'peter@example.com', org: 'openclaw', auth: 'bearer', admin: false, claimed: true, credential: '' }),
        'content-type': 'application/json',
      }
      const response = await fresh.fetch(
        new Request(`https://broker.test/v1/runs/${run.id}/events`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ type: 'stdout', data: 'from a fresh instance\n' }),
        }),
      )
      expect(response.status).toBe(201)
      const [socket] = state.getWebSockets()
      await fresh.webSocketMessage(socket!, JSON.stringify({ type: 'ping' }))
    })
    expect(await client.next()).toMatchObject({ nextSeq: 2, events: [{ seq: 2, data: 'from a fresh instance\n' }] })
    expect(await client.next()).toEqual({ type: 'pong' })
  })

  it('abortAllDurableObjects drops open sockets in this pool, so clients resubscribe from their last seq', async () => {
    const run = await createRun(peter)
    const client = await connect(peter)
    client.send({ type: 'subscribe_run', runID: run.id })
    expect((await client.next()).nextSeq).toBe(1)
    const closed = new Promise<number>((resolve) => client.ws.addEventListener('close', (event) => resolve(event.code)))
    await abortAllDurableObjects()
    expect(await closed).toBe(1006)
    await append(run.id, 'while away\n')
    const again = await connect(peter)
    again.send({ type: 'subscribe_run', runID: run.id, after: 1 })
    expect(await again.next()).toMatchObject({ nextSeq: 2, events: [{ seq: 2, data: 'while away\n' }] })
  })
})
