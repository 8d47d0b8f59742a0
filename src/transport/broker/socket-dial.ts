import WebSocket from 'ws'

/**
 * One WebSocket upgrade to the broker (the WebVNC and code agent sockets, the egress link).
 * Only `ws`: the egress link, bundled into the lease-side client, uses it too.
 */

/** Why a dial failed: the HTTP status the broker answered (0 when it was not reached) and its body. */
export class BrokerSocketDialError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body = '',
  ) {
    super(message)
    this.name = 'BrokerSocketDialError'
  }
}

/**
 * Opens the socket; resolves once it is open, rejects with a BrokerSocketDialError. It resolves
 * **paused**: a frame the broker wrote right behind the 101 would otherwise be emitted before the
 * caller's handlers are on (the resolution runs after it) and lost. Attach them, then `resume()`.
 */
export function dialBrokerSocket(url: string, headers: Record<string, string>, timeoutMs = 10_000): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers, handshakeTimeout: timeoutMs, perMessageDeflate: false })
    socket.binaryType = 'nodebuffer'
    let settled = false
    const fail = (error: BrokerSocketDialError) => {
      if (settled) return
      settled = true
      socket.terminate()
      reject(error)
    }
    socket.once('unexpected-response', (_request, response) => {
      let body = ''
      const refused = () => {
        const status = response.statusCode ?? 0
        fail(new BrokerSocketDialError(`the broker answered ${status}`, status, body.trim()))
      }
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (body = (body + chunk).slice(0, 600)))
      response.on('end', refused)
      response.on('error', refused)
    })
    socket.once('error', (error) => fail(new BrokerSocketDialError(error.message, 0)))
    socket.once('open', () => {
      settled = true
      socket.pause()
      socket.removeAllListeners('error')
      resolve(socket)
    })
  })
}
