import { forwardHttp, upgradeUpstream } from './proxy-forward.js'
import { createServer, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'

/**
 * A loopback HTTP proxy in front of a broker that counts requests per route and can
 * play an older broker: with `control` off it answers 404 for `/v1/control` (upgrade
 * or not) and forwards everything else; with it on, the WebSocket upgrade is spliced
 * through to the broker untouched.
 */
export interface OldBrokerProxy {
  url: string
  port: number
  /** Requests seen per `METHOD /path` with IDs folded to `{id}` (e.g. `POST /v1/leases/{id}/heartbeat`). */
  count(route: string): number
  /** Forgets every count. */
  reset(): void
  /** true: forward the control socket; false: answer 404 like a broker that has none. */
  control(on: boolean): void
  /** Drops every spliced WebSocket connection (RST). */
  cutSockets(): void
  /** Sends these as broker→client WebSocket frames (text for strings, binary for Buffers) on every spliced socket, between real frames. */
  inject(frames: (string | Buffer)[]): void
  close(): Promise<void>
}

const routeOf = (method: string, url: string) =>
  `${method} ${new URL(url, 'http://x').pathname.replace(/\/(cbx|run)_[0-9a-f]{12}(?=\/|$)/g, '/{id}').replace(/\/v1\/leases\/[^/]+\/heartbeat$/, '/v1/leases/{id}/heartbeat')}`

export async function oldBrokerProxy(target: string, options: { control?: boolean } = {}): Promise<OldBrokerProxy> {
  const upstream = new URL(target)
  let controlOn = options.control ?? false
  const counts = new Map<string, number>()
  const spliced = new Set<Socket>()
  const injectors = new Set<(frames: Buffer[]) => void>()
  const note = (request: IncomingMessage) => {
    const route = routeOf(request.method ?? 'GET', request.url ?? '/')
    counts.set(route, (counts.get(route) ?? 0) + 1)
    return route
  }
  const notFound = JSON.stringify({ error: 'not_found', message: 'no such route' })

  const server = createServer((request, response) => {
    const route = note(request)
    if (route.endsWith(' /v1/control') && !controlOn) {
      response.writeHead(404, { 'content-type': 'application/json' }).end(notFound)
      return
    }
    forwardHttp(request, response, upstream)
  })

  server.on('upgrade', (request: IncomingMessage, client: Socket, head: Buffer) => {
    const route = note(request)
    client.on('error', () => {})
    if (!route.endsWith(' /v1/control') || !controlOn) {
      client.end(
        `HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(notFound)}\r\nconnection: close\r\n\r\n${notFound}`,
      )
      return
    }
    const broker = upgradeUpstream(request, client, head, upstream)
    spliced.add(client)
    client.on('close', () => spliced.delete(client))
    client.pipe(broker)
    // Broker→client: forward the 101 response, then whole frames only, so injected frames
    // always land between two real ones.
    let pending = Buffer.alloc(0)
    let upgraded = false
    broker.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      if (!upgraded) {
        const end = pending.indexOf('\r\n\r\n')
        if (end < 0) return
        client.write(pending.subarray(0, end + 4))
        pending = pending.subarray(end + 4)
        upgraded = true
      }
      for (;;) {
        const size = frameSize(pending)
        if (size === undefined || pending.length < size) return
        client.write(pending.subarray(0, size))
        pending = pending.subarray(size)
      }
    })
    broker.on('end', () => client.end())
    const inject = (frames: Buffer[]) => {
      if (upgraded) for (const frame of frames) client.write(frame)
    }
    injectors.add(inject)
    client.on('close', () => injectors.delete(inject))
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('oldBrokerProxy: no TCP address')
  return {
    url: `http://127.0.0.1:${address.port}`,
    port: address.port,
    count: (route) => counts.get(route) ?? 0,
    reset: () => counts.clear(),
    control(on) {
      controlOn = on
    },
    inject(frames) {
      const encoded = frames.map((frame) => encodeFrame(frame))
      for (const inject of injectors) inject(encoded)
    },
    cutSockets() {
      for (const socket of [...spliced]) socket.resetAndDestroy()
    },
    async close() {
      for (const socket of [...spliced]) socket.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** Bytes of the unmasked frame at the start of `data`, or undefined while its header is incomplete. */
function frameSize(data: Buffer): number | undefined {
  if (data.length < 2) return undefined
  const short = data[1] & 0x7f
  if (short < 126) return 2 + short
  if (short === 126) return data.length < 4 ? undefined : 4 + data.readUInt16BE(2)
  return data.length < 10 ? undefined : 10 + Number(data.readBigUInt64BE(2))
}

/** One final, unmasked server frame: text for a string, binary for a Buffer. */
function encodeFrame(payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload
  const opcode = typeof payload === 'string' ? 0x81 : 0x82
  let header: Buffer
  if (body.length < 126) header = Buffer.from([opcode, body.length])
  else if (body.length < 65_536) {
    header = Buffer.alloc(4)
    header.writeUInt16BE(body.length, 2)
    header[1] = 126
  } else {
    header = Buffer.alloc(10)
    header.writeBigUInt64BE(BigInt(body.length), 2)
    header[1] = 127
  }
  header[0] = opcode
  return Buffer.concat([header, body])
}
