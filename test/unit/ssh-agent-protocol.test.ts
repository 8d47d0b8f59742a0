import { describe, expect, it } from 'vitest'
import { encodeFrame, Frame, frameDecoder } from '../../src/transport/ssh/agent-protocol.js'
import { sleep } from '../support/fixtures.js'

describe('agent frames', () => {
  it('reassemble across arbitrary chunk boundaries, binary and JSON alike', () => {
    const seen: Array<[number, string]> = []
    const decode = frameDecoder((type, payload) => seen.push([type, payload.toString('latin1')]))
    const bytes = Buffer.concat([
      encodeFrame(Frame.request, { op: 'status' }),
      encodeFrame(Frame.stdin, Buffer.from([0, 1, 2, 255])),
      encodeFrame(Frame.stdinEnd),
    ])
    for (let i = 0; i < bytes.length; i += 3) decode(bytes.subarray(i, i + 3))
    expect(seen).toEqual([
      [Frame.request, '{"op":"status"}'],
      [Frame.stdin, '\u0000\u0001\u0002\u00ff'],
      [Frame.stdinEnd, ''],
    ])
  })
})

describe('agent exec', () => {
  it('interrupted before it was sent: sends nothing and reports the signal', async () => {
    const { createServer, connect } = await import('node:net')
    const { mkdtempSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const { agentExec } = await import('../../src/transport/ssh/agent-client.js')
    let received = 0
    const server = createServer((socket) => socket.on('data', (d) => (received += d.length)))
    const path = join(mkdtempSync(join(tmpdir(), 'crabbox-agent-')), 'agent.sock')
    await new Promise<void>((resolve) => server.listen(path, resolve))
    try {
      const socket = connect(path)
      await new Promise((resolve) => socket.once('connect', resolve))
      const abort = new AbortController()
      abort.abort('SIGINT')
      const target = { host: 'h', port: 22, fallbackPorts: [], user: 'u', privateKeyPath: '/k', knownHostsPath: '/kh' }
      expect(await agentExec(socket, target, 'true', { signal: abort.signal })).toEqual({ code: null, signal: 'SIGINT' })
      await sleep(50)
      expect(received).toBe(0)
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
