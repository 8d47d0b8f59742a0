import { forwardHttp, upgradeUpstream } from './proxy-forward.js'
import { createServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'

/**
 * A loopback stand-in for Cloudflare Access in front of a broker: every request and
 * every WebSocket upgrade must carry the service token (`CF-Access-Client-Id` and
 * `CF-Access-Client-Secret`) or the Access token (`cf-access-token`), else it is
 * answered 403 with an HTML page, as Access does for a client it does not know.
 * Accepted requests are forwarded untouched; upgrades are spliced through.
 */
export interface AccessProxy {
  url: string
  /** What came in: `METHOD /path`, whether it was an upgrade, and whether Access let it through. */
  seen: Array<{ route: string; upgrade: boolean; allowed: boolean }>
  close(): Promise<void>
}

export interface AccessProxyOptions {
  clientId: string
  clientSecret: string
  token?: string
}

const deniedPage =
  '<!DOCTYPE html><html><head><title>Forbidden</title></head><body>Forbidden. You do not have access (Cloudflare Access).</body></html>'

export async function accessProxy(target: string, options: AccessProxyOptions): Promise<AccessProxy> {
  const upstream = new URL(target)
  const seen: AccessProxy['seen'] = []
  const sockets = new Set<Socket>()
  const allowed = (headers: IncomingHttpHeaders) =>
    (headers['cf-access-client-id'] === options.clientId && headers['cf-access-client-secret'] === options.clientSecret) ||
    (options.token !== undefined && headers['cf-access-token'] === options.token)
  const note = (request: IncomingMessage, upgrade: boolean) => {
    const ok = allowed(request.headers)
    seen.push({ route: `${request.method} ${new URL(request.url ?? '/', 'http://x').pathname}`, upgrade, allowed: ok })
    return ok
  }

  const server = createServer((request, response) => {
    if (!note(request, false)) {
      request.resume()
      response.writeHead(403, { 'content-type': 'text/html; charset=utf-8' }).end(deniedPage)
      return
    }
    forwardHttp(request, response, upstream)
  })

  server.on('upgrade', (request: IncomingMessage, client: Socket, head: Buffer) => {
    client.on('error', () => {})
    if (!note(request, true)) {
      client.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/html\r\ncontent-length: ${Buffer.byteLength(deniedPage)}\r\nconnection: close\r\n\r\n${deniedPage}`,
      )
      return
    }
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    const broker = upgradeUpstream(request, client, head, upstream)
    client.pipe(broker)
    broker.pipe(client)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('accessProxy: no TCP address')
  return {
    url: `http://127.0.0.1:${address.port}`,
    seen,
    async close() {
      for (const socket of [...sockets]) socket.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
