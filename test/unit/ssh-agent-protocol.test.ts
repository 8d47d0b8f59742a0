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

  it('createExclusive makes a claim file once: created, then taken; failed where it cannot be made', async () => {
    const { mkdtempSync, rmSync, statSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const { createExclusive } = await import('../../src/transport/ssh/agent-frames.js')
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-claim-'))
    try {
      const claim = join(dir, 'claim-1-a')
      expect(createExclusive(claim)).toBe('created')
      expect(statSync(claim).mode & 0o777).toBe(0o600)
      expect(statSync(claim).size).toBe(0)
      expect(createExclusive(claim)).toBe('taken')
      expect(createExclusive(join(dir, 'missing', 'claim-2-b'))).toBe('failed')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
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

describe('agent connect-exec', () => {
  const target = { host: 'h', port: 22, fallbackPorts: [], user: 'u', privateKeyPath: '/k', knownHostsPath: '/kh' }

  /** A fake agent on a unix socket: `onRequest` gets the decoded frames of each client. */
  async function fakeAgent(onFrame: (socket: import('node:net').Socket, type: number, payload: Buffer) => void) {
    const { createServer, connect } = await import('node:net')
    const { mkdtempSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const server = createServer((socket) =>
      socket.on(
        'data',
        frameDecoder((type, payload) => onFrame(socket, type, payload)),
      ),
    )
    const path = join(mkdtempSync(join(tmpdir(), 'crabbox-agent-')), 'agent.sock')
    await new Promise<void>((resolve) => server.listen(path, resolve))
    const client = async () => {
      const socket = connect(path)
      await new Promise((resolve) => socket.once('connect', resolve))
      return socket
    }
    return { client, close: () => new Promise((resolve) => server.close(resolve)) }
  }

  it('holds stdin back until the agent says connected, then runs as exec', async () => {
    const { agentExec } = await import('../../src/transport/ssh/agent-client.js')
    const seen: Array<[number, string]> = []
    const agent = await fakeAgent((socket, type, payload) => {
      seen.push([type, type === Frame.request ? JSON.parse(payload.toString()).op : payload.toString()])
      if (type === Frame.request) setTimeout(() => socket.write(encodeFrame(Frame.connected, { port: 2222 })), 30)
      if (type === Frame.stdinEnd) socket.end(encodeFrame(Frame.result, { ok: true, result: { code: 0 } }))
    })
    try {
      let port: number | undefined
      const result = await agentExec(
        await agent.client(),
        target,
        'cat',
        { stdin: 'input' },
        { limitMs: 5000, onConnected: (p) => (port = p) },
      )
      expect(result).toEqual({ code: 0 })
      expect(port).toBe(2222)
      expect(seen).toEqual([
        [Frame.request, 'connect-exec'],
        [Frame.stdin, 'input'],
        [Frame.stdinEnd, ''],
      ])
    } finally {
      await agent.close()
    }
  })

  it('an agent lost before it connected is AgentLost (nothing ran); a connect error is the agent reply', async () => {
    const { AgentLost, agentExec } = await import('../../src/transport/ssh/agent-client.js')
    let calls = 0
    const agent = await fakeAgent((socket, type) => {
      if (type !== Frame.request) return
      if (calls++ === 0) return socket.destroy()
      socket.end(encodeFrame(Frame.result, { ok: false, error: { message: 'cannot reach h:22', exitCode: 7, code: 'ssh' } }))
    })
    try {
      await expect(agentExec(await agent.client(), target, 'true', {}, { limitMs: 5000 })).rejects.toBeInstanceOf(AgentLost)
      await expect(agentExec(await agent.client(), target, 'true', {}, { limitMs: 5000 })).rejects.toMatchObject({
        message: 'cannot reach h:22',
        exitCode: 7,
      })
    } finally {
      await agent.close()
    }
  })

  it('an older agent that does not know the request is AgentOutdated; Ctrl-C while connecting drops the request', async () => {
    const { AgentOutdated, agentExec } = await import('../../src/transport/ssh/agent-client.js')
    let calls = 0
    const agent = await fakeAgent((socket, type) => {
      if (type !== Frame.request || calls++ > 0) return // the second request never gets an answer
      socket.end(
        encodeFrame(Frame.result, { ok: false, error: { message: 'bad agent request: Invalid type', exitCode: 1, code: 'error' } }),
      )
    })
    try {
      await expect(agentExec(await agent.client(), target, 'true', {}, { limitMs: 5000 })).rejects.toBeInstanceOf(AgentOutdated)
      const abort = new AbortController()
      setTimeout(() => abort.abort('SIGINT'), 30)
      expect(await agentExec(await agent.client(), target, 'true', { signal: abort.signal }, { limitMs: 5000 })).toEqual({
        code: null,
        signal: 'SIGINT',
      })
    } finally {
      await agent.close()
    }
  })
})
