import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli, spawnCli } from '../support/cli.js'
import { freePort, startBroker, type BrokerHandle } from '../support/broker.js'
import { processesMatching } from '../support/processes.js'

/** workerd processes serving this port (wrangler passes it as the entry socket). */
const workerdOnPort = (port: number) => processesMatching((p) => p.cmdline.includes('workerd') && p.cmdline.includes(`127.0.0.1:${port}\0`))

const newLeaseId = () => `cbx_${randomBytes(6).toString('hex')}`

describe('crabbox broker dev', () => {
  it('prints its two ready lines on stderr, nothing on stdout, and exits 0 on SIGINT taking workerd with it', async () => {
    const port = await freePort()
    // With a token of its own: no dev-token warning (test/e2e/onboarding.test.ts covers that case).
    const child = spawnCli(['broker', 'dev', '--port', String(port)], { env: { CRABBOX_SHARED_TOKEN: 'harness-token' } })
    child.stdin!.end()
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await new Promise<void>((resolve, reject) => {
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        stderr += d
        if (stderr.split('\n').length > 2) resolve()
      })
      child.once('exit', () => reject(new Error(`exited before ready: ${stderr}`)))
    })
    const url = `http://127.0.0.1:${port}`
    const ready = `broker ready url=${url}\nconnect this machine: printf '%s\\n' "$CRABBOX_SHARED_TOKEN" | crabbox config set-broker --url ${url} --token-stdin\n`
    expect(stderr).toBe(ready)
    expect(await (await fetch(`${url}/v1/health`)).json()).toEqual({ ok: true, service: 'crabbox-coordinator' })
    expect(workerdOnPort(port).length).toBeGreaterThan(0)

    child.kill('SIGINT')
    expect(await exited).toBe(0)
    expect(stdout).toBe('')
    expect(stderr).toBe(ready)
    expect(workerdOnPort(port)).toEqual([])
    await expect(fetch(`${url}/v1/health`)).rejects.toThrow()
  })

  it('refuses a port that is already taken, with a hint', async () => {
    const broker = await freePort()
    const { createServer } = await import('node:net')
    const squatter = createServer().listen(broker, '127.0.0.1')
    await new Promise((resolve) => squatter.once('listening', resolve))
    try {
      const result = await runCli(['broker', 'dev', '--port', String(broker)])
      expect(result.code).toBe(2)
      expect(result.stderr).toContain(`port ${broker} on 127.0.0.1 is already in use`)
      expect(result.stderr).toContain('--port')
      expect(result.stdout).toBe('')
    } finally {
      squatter.close()
    }
  })
})

describe('startBroker', () => {
  const token = `shared-${randomBytes(8).toString('hex')}`
  // JSON with quotes and `$`: it must reach the Worker byte for byte (no dotenv quoting or expansion damage).
  const hostName = `pool-$HOME-"a'b"`
  let broker: BrokerHandle | undefined
  afterAll(async () => {
    await broker?.stop()
  })

  const api = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${broker!.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return { status: response.status, body: (await response.json()) as any }
  }

  it('answers /v1/health, passes CRABBOX_* settings to the Worker, and keeps leases across a restart', async () => {
    // A second broker started at the same moment must come up too (no shared ports, no shared state).
    const [started, other] = await Promise.all([
      startBroker({
        env: { CRABBOX_SHARED_TOKEN: token, CRABBOX_STATIC_POOL: JSON.stringify([{ name: hostName, host: '192.0.2.10', port: 22 }]) },
      }),
      startBroker(),
    ])
    broker = started
    expect(other.stateDir).not.toBe(broker.stateDir)
    for (const url of [broker.url, other.url]) {
      expect(await (await fetch(`${url}/v1/health`)).json()).toEqual({ ok: true, service: 'crabbox-coordinator' })
    }
    await other.stop()
    // The shared token is known to the Worker only through broker dev's environment hand-off.
    expect((await api('GET', '/v1/whoami')).status).toBe(200)

    const leaseID = newLeaseId()
    const created = await api('POST', '/v1/leases', { provider: 'static', sshPublicKey: 'ssh-ed25519 AAAAC3NzaSupport support', leaseID })
    expect(created.status).toBe(201)
    expect(created.body.lease.id).toBe(leaseID)
    expect(JSON.stringify(created.body.lease)).toContain(JSON.stringify(hostName).slice(1, -1))

    const { port, stateDir } = broker
    await broker.restart()
    expect(broker.port).toBe(port)
    expect(broker.stateDir).toBe(stateDir)
    const after = await api('GET', `/v1/leases/${leaseID}`)
    expect(after.status).toBe(200)
    expect(after.body.lease).toEqual(created.body.lease)

    await broker.stop()
    expect(workerdOnPort(port)).toEqual([])
  })

  it('picks another port when the one it picked is taken before broker dev binds it', async () => {
    const squatted = await freePort()
    const { createServer } = await import('node:net')
    const squatter = createServer().listen(squatted, '127.0.0.1')
    await new Promise((resolve) => squatter.once('listening', resolve))
    const picked: number[] = []
    let started: BrokerHandle | undefined
    try {
      started = await startBroker({
        pickPort: async () => {
          const port = picked.length ? await freePort() : squatted
          picked.push(port)
          return port
        },
      })
      expect(picked).toHaveLength(2)
      expect(started.port).toBe(picked[1])
      expect(await (await fetch(`${started.url}/v1/health`)).json()).toMatchObject({ ok: true })
    } finally {
      await started?.stop()
      squatter.close()
    }
  })
})
