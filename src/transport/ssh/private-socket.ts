import type { Server } from 'node:net'

/**
 * Listens on a unix socket that is 0600 from the moment it exists: umask, not a chmod
 * race. The connection agent and its spare workers both listen this way.
 */
export async function listenPrivately(server: Server, socketPath: string): Promise<void> {
  const oldMask = process.umask(0o177)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(socketPath, () => resolve())
    })
  } finally {
    process.umask(oldMask)
  }
}
