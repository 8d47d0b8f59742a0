import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'

/** Forwards one HTTP request to `upstream` and its reply back (test proxies in front of a broker). */
export function forwardHttp(request: IncomingMessage, response: ServerResponse, upstream: URL): void {
  const forward = httpRequest(
    {
      host: upstream.hostname,
      port: upstream.port,
      method: request.method,
      path: request.url,
      headers: { ...request.headers, host: upstream.host },
    },
    (reply) => {
      response.writeHead(reply.statusCode ?? 502, reply.headers)
      reply.pipe(response)
    },
  )
  forward.on('error', () => response.destroy())
  request.pipe(forward)
}

/**
 * Opens a socket to `upstream` for a WebSocket upgrade and replays the request on it (headers
 * as sent, `host` rewritten, then what the client already sent); each side's close ends the
 * other. The caller pipes the bytes.
 */
export function upgradeUpstream(request: IncomingMessage, client: Socket, head: Buffer, upstream: URL): Socket {
  const broker = connect({ host: upstream.hostname, port: Number(upstream.port) })
  broker.on('error', () => client.destroy())
  client.on('close', () => broker.destroy())
  broker.on('close', () => client.destroy())
  const lines = [`${request.method} ${request.url} HTTP/1.1`]
  for (let i = 0; i < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i]
    lines.push(`${name}: ${name.toLowerCase() === 'host' ? upstream.host : request.rawHeaders[i + 1]}`)
  }
  broker.write(`${lines.join('\r\n')}\r\n\r\n`)
  if (head.length > 0) broker.write(head)
  return broker
}
