import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { sleep } from '../support/fixtures.js'

/**
 * The control socket under real workerd (`crabbox broker dev`). workerd evicts an idle
 * Durable Object whose only connections are hibernatable WebSockets after 10 s of
 * inactivity (the production behaviour; checked by logging object construction: a second
 * instance is built when the append arrives); a subscription made before must keep
 * delivering afterwards, with the socket left open the whole time.
 */

const TOKEN = 'e2e-control-token'
const headers = { authorization: `Bearer ${TOKEN}`, 'x-crabbox-owner': 'hibernate@example.com', 'x-crabbox-org': 'e2e' }
let broker: BrokerHandle

beforeAll(async () => {
  broker = await startBroker({ env: { CRABBOX_SHARED_TOKEN: TOKEN } })
})
afterAll(async () => {
  await broker?.stop()
})

async function post(path: string, body: unknown): Promise<any> {
  const response = await fetch(`${broker.url}${path}`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  expect(response.status).toBeLessThan(300)
  return response.json()
}

function openControl(): Promise<{ ws: WebSocket; next: () => Promise<any> }> {
  const ws = new WebSocket(`${broker.url.replace(/^http/, 'ws')}/v1/control`, { headers })
  const inbox: any[] = []
  const waiters: ((frame: any) => void)[] = []
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data))
    const waiter = waiters.shift()
    if (waiter) waiter(frame)
    else inbox.push(frame)
  })
  const next = () =>
    inbox.length
      ? Promise.resolve(inbox.shift())
      : new Promise<any>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no control frame within 15 s')), 15_000)
          waiters.push((frame) => {
            clearTimeout(timer)
            resolve(frame)
          })
        })
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, next }))
    ws.once('error', reject)
  })
}

describe('control socket under workerd', () => {
  it('keeps delivering a subscription after the object idles out with the socket open', async () => {
    const { run } = await post('/v1/runs', { command: ['true'] })
    const control = await openControl()
    try {
      expect((await control.next()).type).toBe('hello')
      control.ws.send(JSON.stringify({ type: 'subscribe_run', runID: run.id, after: 0 }))
      expect(await control.next()).toMatchObject({ type: 'run_events', nextSeq: 1 })

      // Past workerd's 10 s inactivity eviction; nothing touches the object meanwhile.
      await sleep(12_000)
      expect(control.ws.readyState).toBe(WebSocket.OPEN)

      await post(`/v1/runs/${run.id}/events`, { type: 'stdout', stream: 'stdout', data: 'after idle\n' })
      expect(await control.next()).toMatchObject({
        type: 'run_events',
        runID: run.id,
        nextSeq: 2,
        events: [{ seq: 2, data: 'after idle\n' }],
      })
      control.ws.send(JSON.stringify({ type: 'ping' }))
      expect(await control.next()).toEqual({ type: 'pong' })
    } finally {
      control.ws.close()
    }
  })
})
