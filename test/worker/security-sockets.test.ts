import { SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { headersFor, shared, type Who } from './broker-support.js'
import { openControl, type ControlClient } from './control-support.js'
import { callJson, createRun } from './runs-support.js'
import { recordWork, sqlTotals } from './security-support.js'

/**
 * Finding 8 of the security review: control-socket fan-out.
 *
 * Design (docs/security.md): one caller (one identity) holds at most
 * SOCKETS_PER_CALLER control sockets; the next upgrade answers 429
 * `too_many_sockets` before any socket is accepted. One run has at most
 * SUBSCRIBERS_PER_RUN subscribed sockets; the next `subscribe_run` gets an error
 * frame with code `too_many_subscribers`. An append only visits the run's subscribers.
 *
 * The tests count the work an append makes the broker do (sockets walked and visited, SQL)
 * instead of timing it; the latency ratios are measured by `npm run bench -- broker-fairness`.
 */
const SOCKETS_PER_CALLER = 20
const SUBSCRIBERS_PER_RUN = 100

function upgrade(who: Who): Promise<Response> {
  return SELF.fetch('https://broker.test/v1/control', { headers: { ...headersFor(who), upgrade: 'websocket' } })
}

/** Opens sockets until the broker refuses one (or `max`); returns the open ones. */
async function openUntilRefused(who: Who, max: number): Promise<ControlClient[]> {
  const open: ControlClient[] = []
  for (let i = 0; i < max; i++) {
    try {
      open.push(await openControl(who))
    } catch {
      break
    }
  }
  return open
}

/** One append to `runID`, with the work it made the Fleet object do: sockets walked and visited, SQL. */
async function appendWork(who: Who, runID: string, i: number) {
  const { work } = await recordWork(() =>
    callJson(who, `/v1/runs/${runID}/events`, { body: { type: 'stdout', stream: 'stdout', data: `line ${i}\n` }, status: 201 }),
  )
  const { statements, rowsRead, rowsWritten } = sqlTotals(work)
  return { socketsListed: work.socketsListed, socketsVisited: work.socketsVisited, statements, rowsRead, rowsWritten }
}

describe('finding 8: control sockets are limited per caller and per run', () => {
  it(`the ${SOCKETS_PER_CALLER + 1}th socket of one caller is refused with 429 too_many_sockets`, async () => {
    const who = shared('socket-hog@example.com')
    const clients: ControlClient[] = []
    try {
      for (let i = 0; i < SOCKETS_PER_CALLER; i++) clients.push(await openControl(who))
      const refused = await upgrade(who)
      expect(refused.status).toBe(429)
      expect(await refused.json()).toMatchObject({ error: 'too_many_sockets', message: expect.any(String) })
      // Another caller is not affected.
      const other = await openControl(shared('socket-neighbour@example.com'))
      clients.push(other)
      expect(other.hello.type).toBe('hello')
    } finally {
      for (const client of clients) client.close()
    }
  })

  it(`the ${SUBSCRIBERS_PER_RUN + 1}th subscriber of one run gets too_many_subscribers`, async () => {
    const owner = shared('watched@example.com')
    const run = await createRun(owner)
    const clients: ControlClient[] = []
    try {
      // Admins may watch any run; each admin identity is its own caller.
      const callers: Who[] = [
        owner,
        ...Array.from({ length: 6 }, (_, i) => ({ kind: 'admin' as const, owner: `watcher-${i}@example.com`, org: 'openclaw' })),
      ]
      outer: for (const who of callers) {
        for (let i = 0; i < SOCKETS_PER_CALLER; i++) {
          if (clients.length === SUBSCRIBERS_PER_RUN) break outer
          const client = await openControl(who)
          clients.push(client)
          client.send({ type: 'subscribe_run', runID: run.id, after: 0 })
          await client.next((f) => f.type === 'run_events' && f.runID === run.id)
        }
      }
      expect(clients).toHaveLength(SUBSCRIBERS_PER_RUN)
      const extra = await openControl({ kind: 'admin', owner: 'one-too-many@example.com', org: 'openclaw' })
      clients.push(extra)
      extra.send({ type: 'subscribe_run', runID: run.id, after: 0 })
      const reply = await extra.next((f) => f.runID === run.id || f.type === 'error')
      expect(reply).toMatchObject({ type: 'error', code: 'too_many_subscribers' })
    } finally {
      for (const client of clients) client.close()
    }
  }, 120_000)

  it('closed sockets give their slots back, per caller and per run', async () => {
    const owner = shared('slots@example.com')
    const run = await createRun(owner)
    const callers: Who[] = [
      owner,
      ...Array.from({ length: 4 }, (_, i) => ({ kind: 'admin' as const, owner: `slot-watcher-${i}@example.com`, org: 'openclaw' })),
    ]
    const clients: ControlClient[] = []
    try {
      for (const who of callers) {
        for (let i = 0; i < SOCKETS_PER_CALLER; i++) {
          const client = await openControl(who)
          clients.push(client)
          client.send({ type: 'subscribe_run', runID: run.id, after: 0 })
          await client.next((f) => f.type === 'run_events' && f.runID === run.id)
        }
      }
      expect(clients).toHaveLength(SUBSCRIBERS_PER_RUN)
      expect((await upgrade(owner)).status).toBe(429)
      // The owner closes one socket: it may open another, and that one may subscribe.
      clients.shift()!.close()
      let again: ControlClient | undefined
      for (let tries = 0; !again && tries < 40; tries++) {
        again = await openControl(owner).catch(() => undefined)
        if (!again) await new Promise((resolve) => setTimeout(resolve, 50))
      }
      expect(again, 'a closed socket still counts against its caller').toBeDefined()
      clients.push(again!)
      again!.send({ type: 'subscribe_run', runID: run.id, after: 0 })
      expect(await again!.next((f) => f.runID === run.id || f.type === 'error')).toMatchObject({ type: 'run_events', runID: run.id })
    } finally {
      for (const client of clients) client.close()
    }
  }, 120_000)

  it("an attacker's sockets add no work to a victim's appends", async () => {
    const victim = shared('quiet-victim@example.com')
    const victimRun = await createRun(victim)
    // The attacker's run exists for both counts: a run id sorting next to the victim's is one more
    // index row for SQLite to step over at the end of the victim's events, which is not the sockets' doing.
    const attacker = shared('fan-out@example.com')
    const attackerRun = await createRun(attacker)
    const watcher = await openControl(victim)
    watcher.send({ type: 'subscribe_run', runID: victimRun.id, after: 0 })
    await watcher.next((f) => f.type === 'run_events')
    const quiet = await appendWork(victim, victimRun.id, 1)
    await watcher.next((f) => f.type === 'run_events' && f.events.length > 0)
    // The watcher is the only socket an append to its run visits.
    expect(quiet).toMatchObject({ socketsListed: 0, socketsVisited: 1 })

    const open = await openUntilRefused(attacker, 300)
    try {
      for (const client of open) {
        client.send({ type: 'subscribe_run', runID: attackerRun.id, after: 0 })
        await client.next((f) => f.type === 'run_events' && f.runID === attackerRun.id)
      }
      // Counted, not timed: with every attacker socket open and subscribed, the victim's append does the same work.
      const loaded = await appendWork(victim, victimRun.id, 2)
      await watcher.next((f) => f.type === 'run_events' && f.events.length > 0)
      expect(loaded, `victim append work quiet vs beside ${open.length} sockets`).toEqual(quiet)
      expect(open.length).toBeLessThanOrEqual(SOCKETS_PER_CALLER)
    } finally {
      for (const client of open) client.close()
      watcher.close()
    }
  }, 180_000)
})
