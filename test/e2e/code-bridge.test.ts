import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { CodeHealth } from '../../src/protocol/code.js'
import { runCli, spawnCli } from '../support/cli.js'
import { codeStandInScript } from '../support/code-stand-in.js'
import { collectOutput, until } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'
import { tcpProxy } from '../support/tcp-proxy.js'

/**
 * `crabbox code` end to end: the broker under workerd with a static pool host that declares
 * `code`, a real sshd host running a stand-in for code-server on its loopback 127.0.0.1:8080
 * (HTTP plus a WebSocket echo; code-server itself needs the internet to install), and the
 * built CLI holding the bridge. The portal's requests go browser → broker → relay → agent
 * socket → CLI → SSH → runner and back.
 */

const TOKEN = 'e2e-code-token'
const OWNER = 'coder@example.com'
const rig = brokerWithStaticHosts({ token: TOKEN, owner: OWNER, names: ['e2e-code'], entry: () => ({ code: true }) })
const auth = { authorization: `Bearer ${TOKEN}`, 'x-crabbox-owner': OWNER }
let leaseId: string
let slug: string
let standIn: number | undefined

const startStandIn = async () => {
  standIn = Number((await rig.host.run(codeStandInScript())).stdout.trim())
  await until('the stand-in listens', async () => (await rig.host.run('ss -ltn')).stdout.includes('127.0.0.1:8080'), 20_000)
}

beforeAll(async () => {
  await startStandIn()
  const { lease } = await rig.api('POST', '/v1/leases', { provider: 'static', code: true, sshPublicKey: rig.host.publicKey, keep: true })
  leaseId = lease.id
  slug = lease.slug
})

afterAll(async () => {
  if (standIn) await rig.host.run(`kill ${standIn}`)
})

const portal = (path = '') => `${rig.broker.url}/portal/leases/${leaseId}/code/${path}`
const health = async (): Promise<CodeHealth> => (await fetch(portal('health'), { headers: auth })).json() as Promise<CodeHealth>

/** Opens a browser-side WebSocket through the broker; resolves with it and what it received. */
async function browserSocket(path: string): Promise<{ ws: WebSocket; received: (string | Buffer)[] }> {
  const url = portal(path).replace(/^http/, 'ws')
  const ws = new WebSocket(url, { headers: auth, perMessageDeflate: false })
  const received: (string | Buffer)[] = []
  ws.on('message', (data: Buffer, isBinary: boolean) => received.push(isBinary ? data : data.toString('utf8')))
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  return { ws, received }
}

describe('crabbox code', () => {
  it('shows the waiting page before the bridge connects, then carries HTTP and a WebSocket echo to the runner', async () => {
    const waiting = await fetch(portal(), { headers: auth })
    expect(waiting.status).toBe(200)
    const html = await waiting.text()
    expect(html).toContain('Waiting for the code bridge')
    expect(html).toContain(`crabbox code --id ${slug} --open`)

    const bridge = spawnCli(['code', '--id', leaseId, '--local-port', '0'], { home: rig.home, env: rig.cliEnv() })
    const out = collectOutput(bridge)
    try {
      await until('the portal line', () => out.stdout().includes('portal: '), 60_000).catch((error) => {
        throw new Error(`${(error as Error).message}; stderr: ${out.stderr()}`)
      })
      expect(out.stdout()).toContain(`portal: ${portal()}`)
      expect((await health()).code.agentConnected).toBe(true)

      // HTTP GET and POST: code-server's answer, the prefix stripped, Host and Origin the runner's own.
      const get = await fetch(portal('static/app.js?v=1'), { headers: { ...auth, origin: rig.broker.url } })
      expect(get.status).toBe(200)
      expect(get.headers.get('x-runner')).toBe('stand-in')
      expect(get.headers.get('content-security-policy')).toContain("default-src 'self'")
      expect(await get.text()).toBe('GET /static/app.js?v=1 host=127.0.0.1:8080 origin=http://127.0.0.1:8080')
      const big = 'x'.repeat(100_000)
      const post = await fetch(portal('api/echo'), { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: big })
      expect(post.status).toBe(200)
      expect(await post.text()).toBe(`POST /api/echo host=127.0.0.1:8080 body=${big}`)

      // A browser WebSocket: the runner's greeting, then an echo of a small and a chunked (> 15 KiB) frame.
      const { ws, received } = await browserSocket('stable-1?reconnectionToken=abc')
      await until('the greeting', () => received.length >= 1, 20_000)
      expect(received[0]).toBe('hello from /stable-1?reconnectionToken=abc')
      ws.send('ping')
      const bytes = Buffer.alloc(64 * 1024).map((_, i) => i % 253)
      ws.send(bytes)
      await until('both echoes', () => received.length >= 3, 20_000)
      expect(received[1]).toBe('ping')
      expect(Buffer.compare(received[2] as Buffer, bytes)).toBe(0)
      ws.close()

      // --local-port: code-server on a local port too, straight over SSH.
      const localPort = Number(/local: http:\/\/127\.0\.0\.1:(\d+)\//.exec(out.stdout())?.[1])
      expect(await (await fetch(`http://127.0.0.1:${localPort}/direct`)).text()).toBe('GET /direct host=127.0.0.1:' + localPort)
    } finally {
      bridge.kill('SIGTERM')
      await out.done
    }
    // Stopped mid-session: the layer and the way back.
    expect(out.stderr()).toContain('problem: bridge: the code bridge was stopped (SIGTERM)')
    expect(out.stderr()).toContain(`rescue: crabbox code --id ${leaseId}`)
    await until('the waiting page again', async () => !(await health()).code.agentConnected, 20_000)
  })

  it('hands the lease to a newer bridge: the old one stops with problem/rescue lines, the new one serves', async () => {
    const firstChild = spawnCli(['code', '--id', leaseId], { home: rig.home, env: rig.cliEnv() })
    const first = collectOutput(firstChild)
    const secondChild = spawnCli(['code', '--id', slug], { home: rig.home, env: rig.cliEnv() })
    const second = collectOutput(secondChild)
    try {
      await until('a bridge', () => first.stdout().includes('portal: ') || second.stdout().includes('portal: '), 60_000)
      // Whichever connected last holds the lease; the other one stops.
      const code = await Promise.race([first.done, second.done])
      expect(code).not.toBe(0)
      const stopped = first.stderr().includes('problem: bridge:') ? first : second
      expect(stopped.stderr()).toContain('problem: bridge: a newer code bridge for this lease took over (1012)')
      expect(stopped.stderr()).toContain('rescue: crabbox code --id ')
      const answer = await fetch(portal('after-replace'), { headers: auth })
      expect(await answer.text()).toBe('GET /after-replace host=127.0.0.1:8080')
    } finally {
      firstChild.kill('SIGTERM')
      secondChild.kill('SIGTERM')
      await Promise.all([first.done, second.done])
    }
  })

  it('reconnects with a fresh ticket when its connection to the broker is cut', async () => {
    const target = new URL(rig.broker.url)
    const proxy = await tcpProxy({ host: target.hostname, port: Number(target.port) })
    const child = spawnCli(['code', '--id', leaseId], {
      home: rig.home,
      env: rig.cliEnv({ CRABBOX_COORDINATOR: `http://127.0.0.1:${proxy.port}` }),
    })
    const out = collectOutput(child)
    try {
      await until('the bridge', () => out.stdout().includes('portal: '), 60_000)
      const before = proxy.totalConnections
      proxy.cut()
      await until('the agent socket again', () => out.stderr().includes('reconnecting') && proxy.totalConnections > before, 30_000)
      let last = ''
      const answer = await until(
        'an answer through the new socket',
        async () => {
          const response = await fetch(portal('after-cut'), { headers: auth })
          const text = await response.text()
          last = `${response.status} ${text.slice(0, 200)}`
          return response.status === 200 && text.startsWith('GET ') ? text : undefined
        },
        30_000,
        200,
      ).catch((error) => {
        throw new Error(`${(error as Error).message}; last answer: ${last}; bridge stderr: ${out.stderr()}`)
      })
      expect(answer).toBe('GET /after-cut host=127.0.0.1:8080')
    } finally {
      child.kill('SIGTERM')
      await out.done
      await proxy.close()
    }
  })

  it('names the code-server layer, with the commands that help, when nothing answers on the runner', async () => {
    await rig.host.run(`kill ${standIn}`)
    standIn = undefined
    try {
      const result = await runCli(['code', '--id', leaseId], { home: rig.home, env: rig.cliEnv() })
      expect(result.code).not.toBe(0)
      expect(result.stderr).toContain('problem: code-server: ')
      expect(result.stderr).toContain(`rescue: crabbox ssh --id ${leaseId} -- systemctl status crabbox-code-server`)
    } finally {
      await startStandIn()
    }
  })
})
