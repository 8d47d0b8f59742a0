import WebSocket from 'ws'
import type { EgressFrame, EgressRole } from '../../protocol/egress.js'
import { type BrokerSocketDialError, dialBrokerSocket } from '../../transport/broker/socket-dial.js'

/**
 * One side's socket to the broker's egress bridge (`/v1/leases/{id}/egress/host|client`),
 * kept open: each dial spends a fresh one-use ticket from `nextTicket`, carries the Cloudflare
 * Access headers, and a lost socket is dialled again with backoff (0.5 s × attempts, at most
 * 5 s). Streams do not survive a lost socket: `onDown` drops them, and new requests work once
 * the socket is back. The lease being released (1000) or a newer session (1012) ends the link.
 * Only `ws` and Node's own modules: this file is bundled into the lease-side client.
 */

export interface LinkOptions {
  brokerUrl: string
  leaseId: string
  role: EgressRole
  /** Cloudflare Access (and any other) headers for the upgrade. */
  headers: Record<string, string>
  nextTicket: () => Promise<string>
  log: (line: string) => void
  onFrame: (frame: EgressFrame) => void
  onDown: () => void
  onUp?: () => void
}

export interface Link {
  readonly connected: boolean
  send(frame: EgressFrame): void
  /** Bytes queued on the socket (for backpressure). */
  buffered(): number
  /** Settles when the link ends for good: the reason. */
  done: Promise<string>
  stop(): void
}

/** A refusal the link does not retry (the ticket call said no, or the broker refused the socket). */
export class LinkRefused extends Error {
  override name = 'LinkRefused'
}

export const egressSocketUrl = (brokerUrl: string, leaseId: string, role: EgressRole): string => {
  const url = new URL(`${brokerUrl.replace(/\/+$/, '')}/v1/leases/${encodeURIComponent(leaseId)}/egress/${role}`)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  return url.toString()
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function dial(options: LinkOptions, ticket: string): Promise<WebSocket> {
  const url = egressSocketUrl(options.brokerUrl, options.leaseId, options.role)
  try {
    // Paused until run() has its handlers on: a frame right behind the 101 would be lost.
    const socket = await dialBrokerSocket(url, { ...options.headers, authorization: `Bearer ${ticket}` })
    socket.on('error', () => undefined)
    return socket
  } catch (error) {
    const { status, body, message } = error as BrokerSocketDialError
    if (status === 0) throw new Error(message, { cause: error })
    const answer = `the broker answered ${status} to the egress ${options.role} socket: ${body}`
    throw status === 401 || status >= 500 ? new Error(answer, { cause: error }) : new LinkRefused(answer, { cause: error })
  }
}

export function openLink(options: LinkOptions): Link {
  let socket: WebSocket | undefined
  let stopped = false
  let finish!: (reason: string) => void
  const done = new Promise<string>((resolve) => (finish = resolve))
  const end = (reason: string) => {
    if (stopped) return
    stopped = true
    socket?.close(1000, 'egress stopped')
    finish(reason)
  }

  const run = async () => {
    let attempt = 0
    while (!stopped) {
      let ws: WebSocket
      try {
        ws = await dial(options, await options.nextTicket())
      } catch (error) {
        if (error instanceof LinkRefused || (error as { fatal?: boolean }).fatal) return end((error as Error).message)
        attempt++
        options.log(`egress ${options.role}: broker unreachable (${(error as Error).message}); retrying`)
        await sleep(Math.min(500 * attempt, 5000))
        continue
      }
      if (stopped) {
        ws.resume()
        return ws.close(1000, 'egress stopped')
      }
      socket = ws
      const openedAt = Date.now()
      options.log(`egress ${options.role}: connected to the broker`)
      options.onUp?.()
      ws.on('message', (data, isBinary) => {
        if (isBinary) return
        try {
          options.onFrame(JSON.parse(data.toString()) as EgressFrame)
        } catch {
          // not a frame of ours
        }
      })
      // Once the broker's close frame is in (CLOSING), drop the connection instead of waiting for
      // the server to end it (a proxy in front may hold it for many seconds); the close event still
      // carries the broker's code and reason.
      const watch = setInterval(() => ws.readyState === WebSocket.CLOSING && ws.terminate(), 250)
      const closing = new Promise<{ code: number; reason: string }>((resolve) =>
        ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
      )
      ws.resume()
      const closed = await closing
      clearInterval(watch)
      socket = undefined
      options.onDown()
      if (stopped) return
      if (closed.code === 1000 && closed.reason === 'lease released') return end('the lease was released')
      if (closed.code === 1012 && closed.reason === 'replaced by a newer egress session') return end('a newer egress session took over')
      if (Date.now() - openedAt > 5000) attempt = 0
      attempt++
      options.log(`egress ${options.role}: broker socket closed (${closed.code}${closed.reason ? ` ${closed.reason}` : ''}); reconnecting`)
      await sleep(Math.min(500 * attempt, 5000))
    }
  }
  void run()

  return {
    get connected() {
      return socket?.readyState === WebSocket.OPEN
    },
    send(frame) {
      if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame))
    },
    buffered: () => socket?.bufferedAmount ?? 0,
    done,
    stop: () => end('stopped'),
  }
}

/** Pauses `source` while the link has more than `high` bytes queued; resumes when it drains. */
export function throttle(link: Link, source: { pause(): void; resume(): void }, high = 4 * 1024 * 1024): void {
  if (link.buffered() <= high) return
  source.pause()
  const check = () => (link.buffered() > high / 2 ? setTimeout(check, 10) : source.resume())
  setTimeout(check, 10)
}
