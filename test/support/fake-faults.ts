/**
 * What the cloud fakes (fake-hetzner.ts, fake-ec2.ts) share: the failure
 * switches tests inject, how a failure plays out on the wire (a hang, an
 * error reply, work done but the reply lost), the handler as `fetch` for
 * workerd, and serving a handler on loopback for the CLI. No Node imports at
 * module level, so it loads inside workerd too.
 */

export type FailureKind =
  /** Never answers and does nothing (the client times out). */
  | 'timeout'
  /** Does the work, then drops the connection before the reply. */
  | 'lost'
  /** Does the work, then never answers. */
  | 'lost-timeout'
  /** Answers with an error status/code instead of doing the work. */
  | 'error'

/** The part of an injected failure every fake understands; each fake adds how a call is matched. */
export interface FaultSpec {
  kind: FailureKind
  status?: number
  code?: string
  message?: string
  /** How many matching calls fail (default 1). */
  times?: number
}

/** Thrown by a handler to make the loopback server drop the connection without a reply. */
export class DropConnection extends Error {
  constructor() {
    super('connection dropped by the fake')
  }
}

/**
 * Injected failures for one fake. `play` picks the first fault the call
 * matches (each fires `times` times) and acts it out; without one it just
 * does the work.
 */
export function faultSwitch<F extends FaultSpec>() {
  const faults: F[] = []
  let hangs: Array<() => void> = []
  const hang = () => new Promise<never>((_, reject) => hangs.push(() => reject(new DropConnection())))
  return {
    inject(fault: F) {
      faults.push(fault)
    },
    async play(matches: (fault: F) => boolean, work: () => Promise<Response>, errorReply: (fault: F) => Response): Promise<Response> {
      const fault = faults.find(matches)
      if (!fault) return work()
      if ((fault.times ?? 1) <= 1) faults.splice(faults.indexOf(fault), 1)
      else fault.times = (fault.times ?? 1) - 1
      if (fault.kind === 'timeout') return hang()
      if (fault.kind === 'error') return errorReply(fault)
      await work()
      if (fault.kind === 'lost') throw new DropConnection()
      return hang()
    },
    /** Releases hung requests (as dropped connections) so nothing is left pending. */
    releaseHung() {
      const pending = hangs
      hangs = []
      for (const release of pending) release()
    },
  }
}

/** Call a fake's handler as `fetch` (workerd tests): a dropped connection surfaces as a TypeError, like a real network failure. */
export function asFetch(handler: (request: Request) => Promise<Response>): (request: Request) => Promise<Response> {
  return async (request) => {
    try {
      return await handler(request)
    } catch (error) {
      if (error instanceof DropConnection) throw new TypeError('Network connection lost.', { cause: error })
      throw error
    }
  }
}

export interface ServedFake {
  url: string
  close(): Promise<void>
}

// The slice of node:http used below, declared here so this module also type-checks for workerd.
interface IncomingLike {
  method?: string
  url?: string
  headers: Record<string, string | string[] | undefined>
  on(event: 'data', listener: (chunk: Uint8Array) => void): void
  on(event: 'end', listener: () => void): void
  socket: { destroy(): void }
}
interface ResponseLike {
  writeHead(status: number, headers: Record<string, string>): void
  end(body?: Uint8Array | string): void
}
interface NodeHttpLike {
  createServer(listener: (req: IncomingLike, res: ResponseLike) => void): {
    listen(port: number, host: string, callback: () => void): void
    address(): unknown
    close(callback: () => void): void
    closeAllConnections(): void
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

/**
 * Serves a fake handler on 127.0.0.1 (Node only; node:http is loaded lazily so
 * this module also loads inside workerd). `DropConnection` destroys the socket.
 */
export async function serveFake(handler: (request: Request) => Promise<Response>): Promise<ServedFake> {
  const moduleName = 'node:http'
  const http = (await import(/* @vite-ignore */ moduleName)) as NodeHttpLike
  const server = http.createServer((req, res) => {
    const chunks: Uint8Array[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const headers = new Headers()
      for (const [k, val] of Object.entries(req.headers)) if (typeof val === 'string') headers.set(k, val)
      const hasBody = chunks.length > 0 && req.method !== 'GET' && req.method !== 'HEAD'
      const request = new Request(`http://${req.headers.host}${req.url}`, {
        method: req.method,
        headers,
        body: hasBody ? concat(chunks) : undefined,
      })
      handler(request).then(
        async (response) => {
          const out: Record<string, string> = {}
          response.headers.forEach((val, k) => (out[k] = val))
          res.writeHead(response.status, out)
          res.end(new Uint8Array(await response.arrayBuffer()))
        },
        (error: unknown) => {
          if (error instanceof DropConnection) req.socket.destroy()
          else {
            res.writeHead(500, { 'content-type': 'text/plain' })
            res.end(String(error))
          }
        },
      )
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
