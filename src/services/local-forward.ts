import { createServer, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/**
 * A local port for the long-running bridges (WebVNC, code): each client that connects to
 * 127.0.0.1:<port> gets its own stream from `open()` (a forward over the lease's SSH
 * connection), piped both ways; either side closing closes the other.
 */
export interface LocalForward {
  server: Server
  /** The clients connected now, so a stopping bridge can drop them. */
  sockets: Set<Socket>
  /** Listens on 127.0.0.1:`port`; a busy port rejects with `busy(problem)`. */
  listen(port: number, busy: (problem: string) => Error): Promise<void>
  close(): void
}

export function localForward(open: () => Promise<Duplex>): LocalForward {
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    sockets.add(client)
    client.once('close', () => sockets.delete(client))
    client.on('error', () => undefined)
    open().then(
      (remote) => {
        client.pipe(remote).pipe(client)
        remote.on('error', () => client.destroy())
        remote.once('close', () => client.destroy())
        client.once('close', () => remote.destroy())
      },
      () => client.destroy(),
    )
  })
  return {
    server,
    sockets,
    listen: (port, busy) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', (error: NodeJS.ErrnoException) =>
          reject(busy(`local port: cannot listen on 127.0.0.1:${port}: ${error.code ?? error.message}`)),
        )
        server.listen(port, '127.0.0.1', () => resolve())
      }),
    close() {
      for (const socket of sockets) socket.destroy()
      server.close()
    },
  }
}
