import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnCli } from '../support/cli.js'
import { oldBrokerProxy, type OldBrokerProxy } from '../support/old-broker-proxy.js'
import { collectOutput as collect, sleep, until } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

/**
 * The control channel's fallback, seen from the broker's side of a counting proxy:
 * with `/v1/control` answered 404 (an older broker) attach and heartbeats work over
 * HTTP; with the socket available they use it and the HTTP routes see nothing.
 */

// One sshd host, listed twice: two leases at a time.
const rig = brokerWithStaticHosts({
  token: 'e2e-fallback-token',
  owner: 'fallback@example.com',
  names: ['e2e-fallback-a', 'e2e-fallback-b'],
})
const { api } = rig
let proxy: OldBrokerProxy
/** A second, older broker in front of the same one, so socket and HTTP runs can go side by side. */
let oldProxy: OldBrokerProxy

const cliEnv = (via: OldBrokerProxy = proxy) => rig.cliEnv({ CRABBOX_COORDINATOR: via.url })

beforeAll(async () => {
  proxy = await oldBrokerProxy(rig.broker.url, { control: true })
  oldProxy = await oldBrokerProxy(rig.broker.url, { control: false })
})

afterAll(async () => {
  await proxy?.close()
  await oldProxy?.close()
})

/** Attaches through the proxy to a run fed over the broker's HTTP API; returns what attach printed. */
async function attachLive(via: OldBrokerProxy): Promise<{ runId: string; stdout: string; code: number | null }> {
  const { run } = await api('POST', '/v1/runs', { command: ['live'] })
  const attach = collect(spawnCli(['attach', run.id, '--poll', '200ms'], { home: rig.home, env: cliEnv(via) }))
  for (let i = 1; i <= 3; i++) await api('POST', `/v1/runs/${run.id}/events`, { type: 'stdout', stream: 'stdout', data: `early ${i}\n` })
  await until('the early lines', () => (attach.stdout().includes('early 3\n') ? true : undefined))
  for (let i = 1; i <= 3; i++) await api('POST', `/v1/runs/${run.id}/events`, { type: 'stdout', stream: 'stdout', data: `late ${i}\n` })
  await api('POST', `/v1/runs/${run.id}/finish`, { exitCode: 0 })
  const code = await attach.done
  return { runId: run.id, code, stdout: attach.stdout() }
}

describe('control channel fallback', () => {
  it('attach against an older broker (no /v1/control) follows the run over HTTP polling; with the socket it never polls', async () => {
    oldProxy.reset()
    const old = await attachLive(oldProxy)
    expect(old.code).toBe(0)
    expect(old.stdout).toBe('early 1\nearly 2\nearly 3\nlate 1\nlate 2\nlate 3\n')
    expect(oldProxy.count('GET /v1/control')).toBeGreaterThanOrEqual(1)
    expect(oldProxy.count('GET /v1/runs/{id}/events')).toBeGreaterThanOrEqual(1)

    proxy.reset()
    const current = await attachLive(proxy)
    expect(current.code).toBe(0)
    expect(current.stdout).toBe('early 1\nearly 2\nearly 3\nlate 1\nlate 2\nlate 3\n')
    expect(proxy.count('GET /v1/control')).toBe(1)
    expect(proxy.count('GET /v1/runs/{id}/events')).toBe(0)
  })

  /**
   * A command that outlives the lease's 12 s idle timeout: the lease survives only if
   * heartbeats arrive (every 5 s), and the proxy shows which way they travelled.
   */
  async function outliveIdle(
    args: string[],
    leaseOf: (stderr: string) => string | undefined,
    via = proxy,
  ): Promise<{ touchedLate: boolean; lastState: string; code: number | null }> {
    const child = collect(spawnCli(args, { home: rig.home, env: cliEnv(via) }))
    const leaseId = await until('the lease', () => leaseOf(child.stderr()))
    let touchedLate = false
    let lastState = ''
    const created = Date.parse((await api('GET', `/v1/leases/${leaseId}`)).lease.createdAt)
    let exited = false
    void child.done.then(() => (exited = true))
    const watch = (async () => {
      while (!exited && !child.stdout().includes('survived')) {
        const { lease } = await api('GET', `/v1/leases/${leaseId}`)
        lastState = lease.state
        if (lease.state === 'active' && Date.parse(lease.lastTouchedAt) - created >= 4000) touchedLate = true
        await sleep(500)
      }
    })()
    const code = await child.done
    await watch
    expect(child.stdout(), child.stderr()).toBe('survived\n')
    return { touchedLate, lastState, code }
  }
  const heartbeatRun = (via: OldBrokerProxy) =>
    outliveIdle(
      ['run', '--no-sync', '--idle-timeout', '12s', '--', 'sh', '-c', 'sleep 16; echo survived'],
      (stderr) => /leased (cbx_[0-9a-f]{12})/.exec(stderr)?.[1],
      via,
    )

  it('heartbeats travel over the control socket when it is open (no HTTP heartbeat) and over HTTP when it is refused', async () => {
    proxy.reset()
    oldProxy.reset()
    const [socket, http] = await Promise.all([heartbeatRun(proxy), heartbeatRun(oldProxy)])
    expect(socket.code).toBe(0)
    expect(socket.touchedLate).toBe(true)
    expect(socket.lastState).toBe('active')
    expect(proxy.count('POST /v1/leases/{id}/heartbeat')).toBe(0)
    expect(proxy.count('GET /v1/control')).toBe(1)

    expect(http.code).toBe(0)
    expect(http.touchedLate).toBe(true)
    expect(http.lastState).toBe('active')
    expect(oldProxy.count('POST /v1/leases/{id}/heartbeat')).toBeGreaterThanOrEqual(3)
    expect(oldProxy.count('GET /v1/control')).toBeGreaterThanOrEqual(1)
  })

  it('crabbox ssh --id heartbeats its lease over the control socket while the command runs', async () => {
    const warm = collect(spawnCli(['warmup', '--json', '--idle-timeout', '12s'], { home: rig.home, env: cliEnv() }))
    expect(await warm.done).toBe(0)
    const lease = JSON.parse(warm.stdout())
    try {
      proxy.reset()
      const session = await outliveIdle(['ssh', '--id', lease.slug, '--', 'sleep 16; echo survived'], () => lease.id)
      expect(session.code).toBe(0)
      expect(session.touchedLate).toBe(true)
      expect(session.lastState).toBe('active')
      expect(proxy.count('POST /v1/leases/{id}/heartbeat')).toBe(0)
      expect(proxy.count('GET /v1/control')).toBe(1)
    } finally {
      await api('POST', `/v1/leases/${lease.id}/release`, { delete: true })
    }
  })
})
