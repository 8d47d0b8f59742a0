import { rmSync } from 'node:fs'
import type { ChildProcess } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, spawnCli, type CliHome } from '../support/cli.js'
import { oldBrokerProxy } from '../support/old-broker-proxy.js'
import { tcpProxy } from '../support/tcp-proxy.js'
import { brokerApi, sleep, until } from '../support/fixtures.js'

/**
 * `crabbox attach` keeps its no-gap, no-duplicate promise through dropped sockets, a
 * broker restart and Durable Object eviction; and the control socket shrugs off garbage.
 * Runs are fed over the broker's HTTP API, the way a `crabbox run` elsewhere feeds them.
 */

const token = 'e2e-resume-token'
const owner = 'resume@example.com'
const headers = { authorization: `Bearer ${token}`, 'x-crabbox-owner': owner, 'x-crabbox-org': 'e2e' }
let broker: BrokerHandle
let home: CliHome
const api = brokerApi(() => broker.url, headers)

function attach(url: string, runId: string) {
  const child: ChildProcess = spawnCli(['attach', runId, '--poll', '250ms', '--debug'], {
    home,
    env: {
      CRABBOX_COORDINATOR: url,
      CRABBOX_COORDINATOR_TOKEN: token,
      CRABBOX_OWNER: owner,
      CRABBOX_ORG: 'e2e',
      NODE_EXTRA_CA_CERTS: undefined,
    },
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdin!.end()
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return { stdout: () => stdout, stderr: () => stderr, done, kill: () => child.kill('SIGKILL') }
}

const line = (i: number) => `line ${String(i).padStart(4, '0')}\n`
const post = (runId: string, data: string) => api('POST', `/v1/runs/${runId}/events`, { type: 'stdout', stream: 'stdout', data })

beforeAll(async () => {
  broker = await startBroker({
    env: {
      CRABBOX_SHARED_TOKEN: token,
      CRABBOX_STATIC_POOL: JSON.stringify([{ name: 'resume-pool', host: '127.0.0.1', port: 1, user: 'crabbox' }]),
    },
  })
  home = cliHome()
})

afterAll(async () => {
  await broker?.stop()
  if (home) rmSync(home.dir, { recursive: true, force: true })
})

describe('attach resume', () => {
  it('loses nothing and repeats nothing over a 1,000-event run when the connection is cut every 100 events', async () => {
    const proxy = await tcpProxy({ host: '127.0.0.1', port: broker.port })
    const { run } = await api('POST', '/v1/runs', { command: ['thousand'] })
    const follower = attach(`http://127.0.0.1:${proxy.port}`, run.id)
    try {
      await until('attach to print run.started', () => follower.stderr().includes('run.started'))
      for (let batch = 0; batch < 10; batch++) {
        // Ten writers at a time: seq order is the broker's, whatever order the posts land in.
        for (let i = batch * 100; i < batch * 100 + 100; i += 10) {
          await Promise.all(Array.from({ length: 10 }, (_, k) => post(run.id, line(i + k + 1))))
        }
        proxy.cut()
      }
      await api('POST', `/v1/runs/${run.id}/finish`, { exitCode: 0 })
      expect(await follower.done).toBe(0)
    } finally {
      follower.kill()
      await proxy.close()
    }
    const recorded: { type: string; data?: string }[] = []
    for (let after = 0; ;) {
      const { events } = await api('GET', `/v1/runs/${run.id}/events?after=${after}&limit=500`)
      recorded.push(...events)
      if (events.length < 500) break
      after += events.length
    }
    const expected = recorded
      .filter((event) => event.type === 'stdout')
      .map((event) => event.data)
      .join('')
    const printed = follower.stdout().split('\n').slice(0, -1)
    expect(printed).toHaveLength(1000)
    expect(new Set(printed).size).toBe(1000)
    expect(follower.stdout()).toBe(expected)
    expect(follower.stderr().match(/\[crabbox\] command\.finished/g)).toHaveLength(1)
    // The socket came back after cuts and resumed mid-run (not only HTTP polling).
    const resumes = [...follower.stderr().matchAll(/control socket open; following \S+ after seq (\d+)/g)].map((m) => Number(m[1]))
    expect(resumes.filter((seq) => seq > 1 && seq < 1000).length).toBeGreaterThanOrEqual(3)
  })

  it('resumes after the broker restarts mid-attach (same state folder)', async () => {
    const { run } = await api('POST', '/v1/runs', { command: ['restart'] })
    const follower = attach(broker.url, run.id)
    try {
      for (let i = 1; i <= 5; i++) await post(run.id, line(i))
      await until('the first five lines', () => follower.stdout().includes(line(5)))
      await broker.restart()
      for (let i = 6; i <= 10; i++) await post(run.id, line(i))
      await api('POST', `/v1/runs/${run.id}/finish`, { exitCode: 7 })
      expect(await follower.done).toBe(7)
    } finally {
      follower.kill()
    }
    expect(follower.stdout()).toBe(Array.from({ length: 10 }, (_, i) => line(i + 1)).join(''))
  })

  it('keeps delivering over the socket after the Durable Object is evicted with the socket open', async () => {
    const counting = await oldBrokerProxy(broker.url, { control: true })
    const { run } = await api('POST', '/v1/runs', { command: ['evict'] })
    const follower = attach(counting.url, run.id)
    try {
      await post(run.id, 'before\n')
      await until('the line before eviction', () => follower.stdout() === 'before\n')
      // workerd evicts an object whose only connections are hibernatable sockets after 10 s idle.
      await sleep(12_000)
      await post(run.id, 'after\n')
      await until('the line after eviction', () => follower.stdout() === 'before\nafter\n')
      await api('POST', `/v1/runs/${run.id}/finish`, { exitCode: 0 })
      expect(await follower.done).toBe(0)
    } finally {
      follower.kill()
      await counting.close()
    }
    // Everything came over the one socket: attach never fell back to polling.
    expect(counting.count('GET /v1/control')).toBe(1)
    expect(counting.count('GET /v1/runs/{id}/events')).toBe(0)
  })
})

describe('control socket', () => {
  it('1,000 malformed frames get error replies, change no state, and leave the socket usable', async () => {
    const { lease } = await api('POST', '/v1/leases', {
      provider: 'static',
      leaseID: 'cbx_00000000f00d',
      sshPublicKey: 'ssh-ed25519 AAAAC3NzaTest test',
    })
    const { run } = await api('POST', '/v1/runs', { command: ['frames'] })
    const ws = new WebSocket(`${broker.url.replace(/^http/, 'ws')}/v1/control`, { headers })
    const frames: any[] = []
    ws.on('message', (data, binary) => frames.push(binary ? { binary: true } : JSON.parse(String(data))))
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    const waitFor = (count: number) => until(`${count} frames`, () => frames.length >= count, 60_000)
    try {
      ws.send(JSON.stringify({ type: 'subscribe_run', runID: run.id, after: 0 }))
      await waitFor(2) // hello, run_events (run.started)
      const before = { lease: (await api('GET', `/v1/leases/${lease.id}`)).lease, run: (await api('GET', `/v1/runs/${run.id}`)).run }

      const garbage: (string | Buffer)[] = [
        Buffer.from([0xde, 0xad, 0xbe, 0xef]),
        '{"type":',
        'null',
        '[]',
        '"heartbeat"',
        JSON.stringify({ type: 'launch_missiles' }),
        JSON.stringify({ type: 42 }),
        JSON.stringify({ type: 'subscribe_run' }),
        JSON.stringify({ type: 'subscribe_run', runID: 12 }),
        JSON.stringify({ type: 'subscribe_run', runID: 'run_000000000000' }),
        JSON.stringify({ type: 'ack', runID: run.id, seq: -5 }),
        JSON.stringify({ type: 'ack', runID: run.id, seq: 'ten' }),
        JSON.stringify({ type: 'heartbeat' }),
        JSON.stringify({ type: 'heartbeat', leaseID: lease.id, idleTimeoutSeconds: 'forever' }),
        JSON.stringify({ type: 'heartbeat', leaseID: 7 }),
        'x'.repeat(70_000),
      ]
      for (let i = 0; i < 1000; i++) ws.send(garbage[i % garbage.length])
      await waitFor(2 + 1000)
      const replies = frames.slice(2)
      expect(replies.every((frame) => frame.type === 'error')).toBe(true)

      const after = { lease: (await api('GET', `/v1/leases/${lease.id}`)).lease, run: (await api('GET', `/v1/runs/${run.id}`)).run }
      expect(after).toEqual(before)

      // Still usable: the subscription's cursor did not move, pings and heartbeats answer.
      await post(run.id, 'still here\n')
      ws.send(JSON.stringify({ type: 'ping' }))
      ws.send(JSON.stringify({ type: 'heartbeat', leaseID: lease.id }))
      await waitFor(2 + 1000 + 3)
      const tail = frames.slice(-3)
      expect(tail).toContainEqual({
        type: 'run_events',
        runID: run.id,
        nextSeq: 2,
        events: [expect.objectContaining({ seq: 2, data: 'still here\n' })],
      })
      expect(tail).toContainEqual({ type: 'pong' })
      expect(tail).toContainEqual(expect.objectContaining({ type: 'heartbeat', leaseID: lease.id, ok: true }))
      expect(ws.readyState).toBe(WebSocket.OPEN)
    } finally {
      ws.close()
      await api('POST', `/v1/leases/${lease.id}/release`, { delete: true })
    }
  })

  it('attach ignores 1,000 malformed frames arriving on its socket and keeps following over it', async () => {
    const counting = await oldBrokerProxy(broker.url, { control: true })
    const { run } = await api('POST', '/v1/runs', { command: ['garbage'] })
    const follower = attach(counting.url, run.id)
    try {
      await post(run.id, 'one\n')
      await until('the first line', () => follower.stdout() === 'one\n')
      const garbage: (string | Buffer)[] = [
        Buffer.from([0, 159, 146, 150]),
        '{"type":"run_events"',
        'null',
        JSON.stringify({ type: 'mystery' }),
        JSON.stringify({ type: 'run_events', runID: run.id, events: 'nope', nextSeq: 2 }),
        JSON.stringify({ type: 'run_events', runID: run.id, events: [{ seq: 'two', type: 'stdout', data: 'forged\n' }], nextSeq: 2 }),
        JSON.stringify({
          type: 'run_events',
          runID: run.id,
          events: [{ runID: run.id, seq: 2, type: 'stdout', stream: 'nowhere', data: 'forged\n', createdAt: 'x' }],
          nextSeq: 2,
        }),
        JSON.stringify({ type: 'heartbeat', leaseID: 42 }),
        JSON.stringify({ type: 'error', code: 7 }),
        'y'.repeat(100_000),
      ]
      counting.inject(Array.from({ length: 1000 }, (_, i) => garbage[i % garbage.length]))
      await post(run.id, 'two\n')
      await post(run.id, 'three\n')
      await api('POST', `/v1/runs/${run.id}/finish`, { exitCode: 0 })
      expect(await follower.done).toBe(0)
    } finally {
      follower.kill()
      await counting.close()
    }
    expect(follower.stdout()).toBe('one\ntwo\nthree\n')
    expect(follower.stderr()).not.toContain('control socket connecting')
    expect(counting.count('GET /v1/control')).toBe(1)
    expect(counting.count('GET /v1/runs/{id}/events')).toBe(0)
  })
})
