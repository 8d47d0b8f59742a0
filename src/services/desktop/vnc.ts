import { createServer, type Server, type Socket } from 'node:net'
import type { ServiceContext } from '../context.js'
import { CrabboxError, usageError } from '../../errors.js'
import { opensshCommand } from '../ssh.js'
import { failed, cli, desktopLease, remote, VNC_PORT, type DesktopFlags } from './session.js'
import { VNC_PASSWORD_PATHS, vncPasswordCommand } from './targets.js'
import { openUrl } from '../open-url.js'

/**
 * `crabbox vnc`: a local TCP port (loopback only) forwarded over the lease's
 * pooled ssh2 connection to the runner's loopback VNC, and the lease's VNC
 * password for a native viewer. Runs until interrupted.
 */

export interface VncFlags extends DesktopFlags {
  localPort?: number
  open?: boolean
  /** Static hosts: the operator runs the VNC server; the user says so. */
  hostManaged?: boolean
}

export interface VncSession {
  leaseId: string
  localPort: number
  url: string
  password: string
  /** The same tunnel with OpenSSH, for those who prefer it. */
  sshCommand: string
  /** Settles when the forward stops (SIGINT, SIGTERM, or the connection is lost). */
  done: Promise<void>
  close(): Promise<void>
}

export const DEFAULT_VNC_LOCAL_PORT = 5901
const RFB_BANNER = /^RFB \d{3}\.\d{3}\n/

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port }, () => {
      server.off('error', reject)
      resolve((server.address() as { port: number }).port)
    })
  })
}

/** Reads the server's first 12 bytes through the tunnel: a VNC server greets with `RFB 003.00x`. */
function readBanner(stream: NodeJS.ReadableStream & { destroy(): void }, limitMs: number): Promise<string> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0)
    const finish = (text: string) => {
      clearTimeout(timer)
      stream.destroy()
      resolve(text)
    }
    const timer = setTimeout(() => finish(got.toString('latin1')), limitMs)
    stream.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk])
      if (got.length >= 12) finish(got.subarray(0, 12).toString('latin1'))
    })
    stream.on('error', () => finish(got.toString('latin1')))
    stream.on('close', () => finish(got.toString('latin1')))
  })
}

export async function startVnc(context: ServiceContext, flags: VncFlags): Promise<VncSession> {
  const localPort = flags.localPort ?? DEFAULT_VNC_LOCAL_PORT
  if (!Number.isInteger(localPort) || localPort < 0 || localPort > 65535)
    throw usageError('--local-port must be a port number (0 picks a free one)')
  const lease = await desktopLease(context, flags, 'vnc', 'vnc')
  let tunnel: Awaited<ReturnType<typeof import('../../transport/ssh/index.js').openTunnel>> | undefined
  try {
    if (lease.static && !flags.hostManaged)
      throw new CrabboxError(`${lease.name} is a static host: crabbox does not run its VNC server`, {
        exit: 'usage',
        code: 'host_managed_required',
        hint: `if the host runs VNC on 127.0.0.1:${VNC_PORT} as docs/desktop.md describes, say so: ${cli(lease, 'vnc')} --host-managed`,
      })
    // Per target: Linux's x11vnc password, or the macOS user's Screen Sharing password.
    const passwordFile = VNC_PASSWORD_PATHS[lease.os.target]
    const read = await remote(lease, vncPasswordCommand(lease.os.target), {
      limitMs: 20_000,
      layer: 'vnc',
      rescue: [cli(lease, 'desktop doctor')],
    })
    const password = read.stdout.toString('utf8').trim()
    if (read.code !== 0 || !password) throw failed(lease, 'vnc', `the VNC password ${passwordFile} is missing or unreadable`)
    const { openTunnel } = await import('../../transport/ssh/index.js')
    tunnel = await openTunnel(lease.target)
    const open = tunnel
    const probe = await open.forward('127.0.0.1', VNC_PORT).catch(() => undefined)
    const banner = probe ? await readBanner(probe, 10_000) : ''
    if (!RFB_BANNER.test(banner)) throw failed(lease, 'vnc', `nothing speaks VNC on 127.0.0.1:${VNC_PORT} on the runner`)

    const sockets = new Set<Socket>()
    const server = createServer((socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      open.forward('127.0.0.1', VNC_PORT).then(
        (channel) => {
          socket.pipe(channel).pipe(socket)
          const end = () => {
            socket.destroy()
            channel.destroy()
          }
          socket.on('error', end).on('close', end)
          channel.on('error', end).on('close', end)
        },
        (error: Error) => {
          context.progress.warn(`vnc: could not reach 127.0.0.1:${VNC_PORT} on the runner: ${error.message}`)
          socket.destroy()
        },
      )
    })
    let port: number
    try {
      port = await listen(server, localPort)
    } catch (error) {
      throw usageError(
        `cannot listen on 127.0.0.1:${localPort}: ${(error as Error).message}`,
        'pick another with --local-port (0 picks a free one)',
      )
    }
    let stop!: () => void
    const done = new Promise<void>((resolve) => (stop = resolve))
    const signals = ['SIGINT', 'SIGTERM'] as const
    const onSignal = () => stop()
    for (const name of signals) process.once(name, onSignal)
    const close = async () => {
      for (const name of signals) process.off(name, onSignal)
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await open.close()
      await lease.close()
    }
    const finished = done.then(close)
    const url = `vnc://localhost:${port}`
    if (flags.open) openViewer(url, context)
    return {
      leaseId: lease.leaseId,
      localPort: port,
      url,
      password,
      sshCommand: `${opensshCommand(lease.target).replace(/^ssh /, `ssh -N -L ${port}:127.0.0.1:${VNC_PORT} `)}`,
      done: finished,
      close: async () => {
        stop()
        await finished
      },
    }
  } catch (error) {
    await tunnel?.close()
    await lease.close()
    throw error
  }
}

/** Opens the system's VNC viewer for `vnc://…`; a failure only warns. */
function openViewer(url: string, context: ServiceContext): void {
  if (!openUrl(url)) context.progress.warn(`could not open ${url} here; open it in your VNC viewer`)
}
