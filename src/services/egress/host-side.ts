import { connect, type Socket } from 'node:net'
import type { EgressFrame } from '../../protocol/egress.js'
import { openLink, throttle, type Link, type LinkOptions } from './link.js'
import { allowed } from './rules.js'

/**
 * The host side of egress, on the operator's machine: for each `open` from the lease it
 * connects to the destination only when the allow-list has it (else an `error` frame naming
 * the refusal, and a log line), then relays bytes as `data` frames until either end closes.
 */

export interface HostSideOptions extends Omit<LinkOptions, 'role' | 'onFrame' | 'onDown'> {
  allow: readonly string[]
}

export interface HostSide {
  link: Link
  /** Open destination connections. */
  open(): number
  stop(): void
}

export function startHostSide(options: HostSideOptions): HostSide {
  const sockets = new Map<string, Socket>()
  const refuse = (id: string, error: string) => link.send({ type: 'error', id, error })

  const open = (frame: Extract<EgressFrame, { type: 'open' }>) => {
    const where = `${frame.host}:${frame.port}`
    if (!allowed(frame.host, options.allow)) {
      options.log(`egress refused ${where}: not in the allow-list`)
      return refuse(frame.id, `egress: ${where} is not allowed by this egress session (allow-list: ${options.allow.join(', ')})`)
    }
    const socket = connect({ host: frame.host, port: frame.port, noDelay: true })
    sockets.set(frame.id, socket)
    let connected = false
    socket.once('connect', () => {
      connected = true
      options.log(`egress open ${where}`)
      link.send({ type: 'open_ok', id: frame.id })
    })
    socket.on('data', (chunk: Buffer) => {
      link.send({ type: 'data', id: frame.id, body: chunk.toString('base64') })
      throttle(link, socket)
    })
    socket.on('error', (error) => {
      if (sockets.get(frame.id) !== socket) return
      sockets.delete(frame.id)
      refuse(frame.id, connected ? `egress: ${where}: ${error.message}` : `egress: cannot connect to ${where}: ${error.message}`)
    })
    socket.on('close', () => {
      if (sockets.get(frame.id) !== socket) return
      sockets.delete(frame.id)
      link.send({ type: 'close', id: frame.id })
    })
  }

  const onFrame = (frame: EgressFrame) => {
    if (frame.type === 'open') return open(frame)
    const socket = sockets.get(frame.id)
    if (!socket) return
    if (frame.type === 'data') socket.write(Buffer.from(frame.body, 'base64'))
    else if (frame.type === 'close' || frame.type === 'error') {
      sockets.delete(frame.id)
      socket.end()
    }
  }
  const onDown = () => {
    for (const socket of sockets.values()) socket.destroy()
    sockets.clear()
  }
  const link: Link = openLink({ ...options, role: 'host', onFrame, onDown })
  return {
    link,
    open: () => sockets.size,
    stop: () => {
      link.stop()
      onDown()
    },
  }
}
