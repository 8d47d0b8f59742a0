import { createServer, connect, type Socket } from 'node:net'

/**
 * A TCP forwarder on 127.0.0.1 for latency and fault injection (this kernel has
 * no tc netem). Delay is applied per direction: a chunk read at t is written at
 * t + delay, in order, so RTT grows by 2 * delay without per-chunk accumulation.
 */
export interface TcpProxy {
  host: string
  port: number
  setDelay(ms: number): void
  cut(): void
  refuse(on: boolean): void
  readonly liveConnections: number
  readonly totalConnections: number
  close(): Promise<void>
}

interface Pending {
  data: Buffer
  due: number
}

/** One direction of a connection: reads from `from`, writes to `to` after the current delay. */
function pipeDelayed(from: Socket, to: Socket, delay: () => number): void {
  const queue: Pending[] = []
  let timer: NodeJS.Timeout | undefined
  let lastDue = 0
  let ended = false
  let waiting = false

  const write = (data: Buffer) => {
    // One drain wait per full buffer, however many queued chunks a flush writes.
    if (to.write(data) || waiting) return
    waiting = true
    from.pause()
    to.once('drain', () => {
      waiting = false
      from.resume()
    })
  }
  const flush = () => {
    timer = undefined
    const now = performance.now()
    while (queue.length > 0 && queue[0].due <= now) write(queue.shift()!.data)
    if (queue.length > 0) timer = setTimeout(flush, queue[0].due - now)
    else if (ended) to.end()
  }

  from.on('data', (data: Buffer) => {
    const ms = delay()
    if (ms <= 0 && queue.length === 0) return write(data)
    // Never earlier than the chunk before it: a lowered delay must not reorder bytes.
    const due = Math.max(performance.now() + ms, lastDue)
    lastDue = due
    queue.push({ data, due })
    timer ??= setTimeout(flush, due - performance.now())
  })
  from.on('end', () => {
    ended = true
    if (queue.length === 0) to.end()
  })
  from.on('close', () => {
    if (timer) clearTimeout(timer)
    timer = undefined
  })
}

/** `listenHost`: where the proxy listens (default 127.0.0.1), e.g. a test host's root-side address so the host reaches it too. */
export async function tcpProxy(
  target: { host: string; port: number },
  options: { delayMs?: number; listenHost?: string } = {},
): Promise<TcpProxy> {
  let delayMs = options.delayMs ?? 0
  let refusing = false
  let total = 0
  const live = new Set<Socket>()

  const server = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    total++
    if (refusing) {
      client.on('error', () => {})
      client.resetAndDestroy()
      return
    }
    client.setNoDelay(true)
    const upstream = connect({ host: target.host, port: target.port, noDelay: true, allowHalfOpen: true })
    const pair = [client, upstream]
    // allowHalfOpen on both: an EOF is forwarded only after the bytes still delayed ahead of it.
    live.add(client)
    const closeBoth = () => {
      live.delete(client)
      for (const socket of pair) if (!socket.destroyed) socket.destroy()
    }
    for (const socket of pair) {
      socket.on('error', closeBoth)
      socket.on('close', closeBoth)
    }
    pipeDelayed(client, upstream, () => delayMs)
    pipeDelayed(upstream, client, () => delayMs)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, options.listenHost ?? '127.0.0.1', () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('tcpProxy: no TCP address')

  const cut = () => {
    // RST rather than FIN: the client sees the connection die, as on a network failure.
    for (const client of [...live]) {
      client.resetAndDestroy()
      live.delete(client)
    }
  }
  return {
    host: options.listenHost ?? '127.0.0.1',
    port: address.port,
    setDelay(ms) {
      delayMs = Math.max(0, ms)
    },
    cut,
    refuse(on) {
      refusing = on
    },
    get liveConnections() {
      return live.size
    },
    get totalConnections() {
      return total
    },
    async close() {
      cut()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
