import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { EgressFrame } from '../../protocol/egress.js'
import { openLink, throttle, type Link, type LinkOptions } from './link.js'

/**
 * The lease side of egress: an HTTP CONNECT proxy on loopback. Each CONNECT becomes an `open`
 * frame to the host side (the operator's machine), which answers `open_ok` (the proxy replies
 * 200 and bytes flow as `data` frames) or `error` (the proxy replies 403 or 502 with the host's
 * reason in the body and `x-crabbox-egress-error`). Plain-HTTP proxy requests are answered
 * 405: clients use CONNECT for every destination (curl does for https URLs). Bundled on its
 * own into dist/egress-client.cjs (client-main.ts) for the lease.
 */

export const OPEN_TIMEOUT_MS = 15_000

interface Stream {
  socket: Socket
  open: boolean
  timer?: NodeJS.Timeout
}

export interface ClientProxyOptions extends Omit<LinkOptions, 'role' | 'onFrame' | 'onDown'> {
  listen: { host: string; port: number }
}

export interface ClientProxy {
  server: Server
  link: Link
  address: { host: string; port: number }
  close(): Promise<void>
}

function reply(socket: Socket, status: number, text: string, error?: string): void {
  const body = `${error ?? text}\n`
  const head = [`HTTP/1.1 ${status} ${text}`, 'content-type: text/plain; charset=utf-8', `content-length: ${Buffer.byteLength(body)}`]
  if (error) head.push(`x-crabbox-egress-error: ${error.replace(/[\r\n]+/g, ' ')}`)
  head.push('connection: close')
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`)
}

export async function startClientProxy(options: ClientProxyOptions): Promise<ClientProxy> {
  const streams = new Map<string, Stream>()
  let next = 0
  const drop = (id: string) => {
    const stream = streams.get(id)
    if (!stream) return
    clearTimeout(stream.timer)
    streams.delete(id)
    return stream
  }

  const onFrame = (frame: EgressFrame) => {
    const stream = streams.get(frame.id)
    if (!stream) return
    switch (frame.type) {
      case 'open_ok':
        clearTimeout(stream.timer)
        stream.open = true
        stream.socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        stream.socket.resume()
        return
      case 'data':
        stream.socket.write(Buffer.from(frame.body, 'base64'))
        return
      case 'close':
        drop(frame.id)
        stream.socket.end()
        return
      case 'error':
        drop(frame.id)
        if (stream.open) stream.socket.destroy()
        else
          reply(
            stream.socket,
            /not allowed/.test(frame.error) ? 403 : 502,
            /not allowed/.test(frame.error) ? 'Forbidden' : 'Bad Gateway',
            frame.error,
          )
        return
    }
  }
  const onDown = () => {
    for (const id of [...streams.keys()]) {
      const stream = drop(id)!
      if (stream.open) stream.socket.destroy()
      else reply(stream.socket, 502, 'Bad Gateway', 'egress: the broker socket was lost; retry')
    }
  }
  const link = openLink({ ...options, role: 'client', onFrame, onDown })

  const server = createServer((request, response) => {
    request.resume()
    response.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', allow: 'CONNECT' })
    response.end('egress: this proxy takes CONNECT only (https destinations)\n')
  })
  server.on('connect', (request: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => undefined)
    const match = /^\[?([^\]\s]+?)\]?:(\d{1,5})$/.exec(request.url ?? '')
    if (!match) return reply(socket, 400, 'Bad Request', `egress: CONNECT needs host:port, got ${request.url}`)
    if (!link.connected) return reply(socket, 502, 'Bad Gateway', 'egress: the broker socket is not connected yet; retry')
    const id = String(++next)
    const stream: Stream = { socket, open: false }
    streams.set(id, stream)
    socket.pause()
    stream.timer = setTimeout(() => {
      drop(id)
      link.send({ type: 'close', id })
      reply(
        socket,
        504,
        'Gateway Timeout',
        `egress: the host side did not answer within ${OPEN_TIMEOUT_MS / 1000} s (is egress host running?)`,
      )
    }, OPEN_TIMEOUT_MS)
    link.send({ type: 'open', id, host: match[1]!, port: Number(match[2]) })
    if (head.length) link.send({ type: 'data', id, body: head.toString('base64') })
    socket.on('data', (chunk: Buffer) => {
      link.send({ type: 'data', id, body: chunk.toString('base64') })
      throttle(link, socket)
    })
    const closed = () => {
      if (drop(id)) link.send({ type: 'close', id })
    }
    socket.on('end', closed)
    socket.on('close', closed)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.listen.port, options.listen.host, () => resolve())
  })
  const bound = server.address()
  const address = typeof bound === 'object' && bound ? { host: options.listen.host, port: bound.port } : options.listen
  return {
    server,
    link,
    address,
    close: async () => {
      link.stop()
      onDown()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
