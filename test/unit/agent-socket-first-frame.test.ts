import { createServer, type Server } from 'node:http'
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocketServer, type WebSocket } from 'ws'
import { startCodeBridge } from '../../src/services/code/bridge.js'
import { openLink } from '../../src/services/egress/link.js'
import { startBridge } from '../../src/services/webvnc/bridge.js'
import type { BrokerClient } from '../../src/transport/broker/client.js'
import type { SshPool } from '../../src/transport/ssh/pool.js'
import type { SshTarget } from '../../src/transport/ssh/types.js'

/**
 * A broker that sends a frame the moment an agent socket opens (a portal request that was
 * waiting for the bridge to come back) writes it right behind the 101: the client reads both
 * in one chunk. The bridge must still see that frame, not drop it before its handlers are on.
 */

const closers: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

const listening = async (server: Server | ReturnType<typeof createTcpServer>) => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return (server.address() as AddressInfo).port
}

/** A broker whose agent sockets get `first` as soon as they open; resolves with what the agent sends back. */
async function eagerBroker(first: string): Promise<{ url: string; answer: Promise<string> }> {
  const server = createServer()
  const wss = new WebSocketServer({ server })
  closers.push(() => {
    for (const client of wss.clients) client.terminate()
    wss.close()
  })
  const answer = new Promise<string>((resolve) =>
    wss.once('connection', (ws: WebSocket) => {
      ws.send(first)
      ws.once('message', (data) => resolve(data.toString()))
    }),
  )
  return { url: `http://127.0.0.1:${await listening(server)}`, answer }
}

describe('an agent socket with a frame right behind its 101', () => {
  it('the code bridge answers the portal request that was waiting for it', async () => {
    const runner = createServer((request, response) => response.end(`runner saw ${request.method} ${request.url}`))
    const runnerPort = await listening(runner)
    const frame = { type: 'http', id: 'r1', method: 'GET', path: '/portal/leases/cbx_1/code/after-cut', headers: {} }
    const broker = await eagerBroker(JSON.stringify(frame))
    const pool = { forwardOut: async () => connect(runnerPort, '127.0.0.1') } as unknown as SshPool
    const bridge = startCodeBridge(
      {
        leaseId: 'cbx_1',
        broker: { url: broker.url } as BrokerClient,
        target: {} as SshTarget,
        pool,
        log: () => undefined,
      },
      'ticket-1',
    )
    closers.push(() => bridge.stop())
    const answer = JSON.parse(await broker.answer) as { type: string; id: string; status: number }
    expect(answer).toMatchObject({ id: 'r1', status: 200 })
    expect(['http', 'http_start']).toContain(answer.type)
  })

  it('the egress link hands that frame on', async () => {
    const broker = await eagerBroker(JSON.stringify({ type: 'open', id: 's1', host: 'example.test', port: 443 }))
    const frames: unknown[] = []
    const got = new Promise<void>((resolve) => {
      const link = openLink({
        brokerUrl: broker.url,
        leaseId: 'cbx_1',
        role: 'client',
        headers: {},
        nextTicket: async () => 'ticket-1',
        log: () => undefined,
        onFrame: (frame) => (frames.push(frame), resolve()),
        onDown: () => undefined,
      })
      closers.push(() => link.stop())
    })
    await got
    expect(frames).toEqual([{ type: 'open', id: 's1', host: 'example.test', port: 443 }])
  })

  it('the WebVNC bridge carries the viewer bytes to the runner VNC', async () => {
    const received: Buffer[] = []
    let gotBytes!: () => void
    const bytesIn = new Promise<void>((resolve) => (gotBytes = resolve))
    const vnc = createTcpServer((stream) => {
      stream.write('RFB 003.008\n')
      stream.on('data', (chunk: Buffer) => (received.push(chunk), gotBytes()))
      stream.on('error', () => undefined)
      closers.push(() => void stream.destroy())
    })
    const port = await listening(vnc)
    const broker = await eagerBroker('RFB 003.008\n')
    const pool = { forwardOut: async () => connect(port, '127.0.0.1') } as unknown as SshPool
    const bridge = startBridge(
      { leaseId: 'cbx_1', broker: { url: broker.url } as BrokerClient, target: {} as SshTarget, pool, slots: 1, log: () => undefined },
      'ticket-1',
    )
    closers.push(() => bridge.stop())
    expect(await broker.answer).toBe('RFB 003.008\n')
    await bytesIn
    expect(Buffer.concat(received).toString()).toBe('RFB 003.008\n')
  })
})
