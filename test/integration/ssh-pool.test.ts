import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { tcpProxy } from '../support/tcp-proxy.js'
import { SshPool } from '../../src/transport/ssh/pool.js'
import type { SshTarget } from '../../src/transport/ssh/types.js'
import { waitForReady } from '../../src/transport/ssh/readiness.js'
import { CrabboxError } from '../../src/errors.js'
import type { Progress } from '../../src/ui/progress.js'

function recorder(): Progress & { lines: string[] } {
  const lines: string[] = []
  const push = (m: string) => void lines.push(m)
  const nothing = () => {}
  return { lines, phase: push, info: push, detail: push, warn: push, transfer: nothing, done: nothing, fail: nothing }
}

const knownHosts = () => join(mkdtempSync(join(tmpdir(), 'crabbox-kh-')), 'known_hosts')
const targetFor = (host: SshHost, overrides: Partial<SshTarget> = {}): SshTarget => ({
  host: host.address,
  port: host.ports[0],
  fallbackPorts: [],
  user: host.user,
  privateKeyPath: host.privateKeyPath,
  knownHostsPath: knownHosts(),
  ...overrides,
})

async function collect(pool: SshPool, target: SshTarget, command: string, stdin?: Readable | string) {
  let stdout = ''
  let stderr = ''
  const result = await pool.exec(target, command, {
    stdin,
    onStdout: (c) => (stdout += c.toString()),
    onStderr: (c) => (stderr += c.toString()),
  })
  return { ...result, stdout, stderr }
}

/** `count` execs one after another on a pool that keeps a spare channel, each with stdin, stderr and its own exit code. */
async function execsOnSpares(host: SshHost, count: number): Promise<void> {
  const warm = new SshPool({ spareChannel: true })
  try {
    const target = targetFor(host)
    for (let i = 0; i < count; i++) {
      expect(await collect(warm, target, `cat; echo ${i} >&2; exit ${i}`, `in${i}`)).toEqual({
        code: i,
        stdout: `in${i}`,
        stderr: `${i}\n`,
      })
    }
  } finally {
    await warm.closeAll()
  }
}

describe('ssh pool against a real sshd', () => {
  let host: SshHost
  const pool = new SshPool()
  beforeAll(async () => {
    // MaxSessions 4: the pool must queue 20 execs on one connection under it.
    host = await sshHost({ ports: [2222, 22], maxSessions: 4 })
  })
  afterAll(async () => {
    await pool.closeAll()
    await host?.stop()
  })

  it('keeps stdout and stderr apart and reports exit codes', async () => {
    const target = targetFor(host)
    const result = await collect(pool, target, 'echo out; echo err >&2; exit 3')
    expect(result).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' })
    expect(await collect(pool, target, 'true')).toMatchObject({ code: 0 })
    expect(await collect(pool, target, 'kill -TERM $$')).toMatchObject({ code: null, signal: 'SIGTERM' })
  })

  it('keeps exit codes, output and stdin right when execs reuse a pre-opened spare channel', async () => {
    await execsOnSpares(host, 5)
  })

  it('closes a pre-opened spare channel that an exec refused before starting (bad env name), so sessions do not run out', async () => {
    const warm = new SshPool({ spareChannel: true })
    try {
      const target = targetFor(host)
      for (let i = 0; i < 6; i++) {
        const error = await warm.exec(target, 'true', { env: { 'BAD-NAME': 'x' } }).catch((e) => e)
        expect(error).toBeInstanceOf(CrabboxError)
        expect(error.exitCode).toBe(2)
      }
      // MaxSessions is 4 here: six leaked spares would have left no session for this one.
      expect(await collect(warm, target, 'echo still-works')).toMatchObject({ code: 0, stdout: 'still-works\n' })
    } finally {
      await warm.closeAll()
    }
  })

  it('applies cwd and env without AcceptEnv', async () => {
    const target = targetFor(host)
    let out = ''
    await pool.exec(target, 'pwd; echo "$GREETING"', {
      cwd: '/tmp',
      env: { GREETING: "it's here" },
      onStdout: (c) => (out += c.toString()),
    })
    expect(out).toBe("/tmp\nit's here\n")
  })

  it('runs 20 parallel execs on one connection under the server session cap', async () => {
    const proxy = await tcpProxy({ host: host.address, port: 2222 })
    try {
      const target = targetFor(host, { host: proxy.host, port: proxy.port })
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => collect(pool, target, `sleep 0.2137; echo ${i}`)))
      expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 20 }, (_, i) => `${i}\n`))
      expect(results.every((r) => r.code === 0)).toBe(true)
      expect(proxy.totalConnections).toBe(1)
      // Every channel was closed: no session process of this host is left.
      const left = (await host.processes()).filter((p) => p.command.includes('sleep 0.2137'))
      expect(left).toEqual([])
    } finally {
      await proxy.close()
    }
  })

  it('streams many MB of stdin with backpressure and gets the exit code', async () => {
    const target = targetFor(host)
    const size = 48 * 1024 * 1024
    const chunk = Buffer.alloc(1024 * 1024, 7)
    let sent = 0
    const source = new Readable({
      read() {
        if (sent >= size) return this.push(null)
        sent += chunk.length
        this.push(chunk)
      },
    })
    const expected = createHash('sha256')
    for (let i = 0; i < size / chunk.length; i++) expected.update(chunk)
    const result = await collect(pool, target, 'sha256sum | cut -d" " -f1; exit 4', source)
    expect(result.code).toBe(4)
    expect(result.stdout.trim()).toBe(expected.digest('hex'))
  })

  it('a runner that goes silent mid-command ends in exit 255 after two missed keepalives, not a hang', async () => {
    // Same mechanism as the default (15 s, two misses = 30 s), at a period a test can wait for.
    const proxy = await tcpProxy({ host: host.address, port: 2222 })
    const quick = new SshPool({ keepaliveIntervalMs: 500 })
    try {
      const target = targetFor(host, { host: proxy.host, port: proxy.port })
      let started!: () => void
      const running = new Promise<void>((resolve) => (started = resolve))
      const outcome = quick.exec(target, 'echo started; sleep 60', { onStdout: () => started() }).catch((e) => e)
      await running
      proxy.setDelay(3_600_000) // the runner stops answering; the TCP connection stays up
      const error = await outcome
      expect(error).toBeInstanceOf(CrabboxError)
      expect(error.exitCode).toBe(255)
    } finally {
      await quick.closeAll()
      await proxy.close()
    }
  })

  it('falls back to the next port when the primary one is closed', async () => {
    // The host listens on 2222 and 22; a target whose primary is a closed port must land on a fallback.
    const target = targetFor(host, { port: 2200, fallbackPorts: [22] })
    const live = await pool.connection(target)
    expect(live.port).toBe(22)
    expect(await collect(pool, target, 'echo fallback')).toMatchObject({ code: 0, stdout: 'fallback\n' })
  })

  it('waits for readiness phase by phase and returns the port that worked', async () => {
    const progress = recorder()
    const ready = await waitForReady(targetFor(host, { port: 2200, fallbackPorts: [2222] }), 'static', {
      timeoutMs: 30_000,
      progress,
      useAgent: false,
    })
    expect(ready.port).toBe(2222)
    expect(ready.fallbackPorts).toEqual([2200])
    const text = progress.lines.join('\n')
    for (const phase of ['(TCP)', '(auth)', '(ready check)', 'using ssh port 2222']) expect(text).toContain(phase)
  })

  it('times out with exit 5 naming the host and the phase it was stuck in', async () => {
    // No crabbox-ready on this host: a managed probe gets through auth and waits at the ready check.
    const stuck = await waitForReady(targetFor(host), 'managed', { timeoutMs: 1500, progress: recorder(), useAgent: false }).catch((e) => e)
    expect(stuck).toBeInstanceOf(CrabboxError)
    expect(stuck.exitCode).toBe(5)
    expect(stuck.message).toContain(`on ${host.address} during ready check`)
    const closed = await waitForReady(targetFor(host, { port: 2200 }), 'static', {
      timeoutMs: 1000,
      progress: recorder(),
      useAgent: false,
    }).catch((e) => e)
    expect(closed.exitCode).toBe(5)
    expect(closed.message).toContain(`on ${host.address} during TCP`)
  })

  it('pins the host key on first use and records it in OpenSSH format', async () => {
    const target = targetFor(host)
    await collect(pool, target, 'true')
    const line = readFileSync(target.knownHostsPath, 'utf8').trim()
    expect(line.startsWith(`[${host.address}]:2222 ssh-ed25519 `)).toBe(true)
  })
})

describe('ssh pool with a spare channel on a server that allows one session', () => {
  let host: SshHost
  beforeAll(async () => {
    host = await sshHost({ ports: [22], maxSessions: 1 })
  })
  afterAll(async () => {
    await host?.stop()
  })

  it('runs every exec, back to back and with stdin, though the next spare is refused while one runs', async () => {
    // The spare for the next exec opens beside the running one: with MaxSessions 1 the server
    // refuses it, which must neither fail the command nor keep the next one from running.
    await execsOnSpares(host, 12)
  })

  it('runs parallel execs one at a time, though sessions of execs that just ended are still being freed', async () => {
    const warm = new SshPool({ spareChannel: true })
    try {
      const target = targetFor(host)
      for (let round = 0; round < 3; round++) {
        const results = await Promise.all([0, 1, 2, 3].map((i) => collect(warm, target, `cat; exit ${i}`, `in${round}${i}`)))
        expect(results).toEqual([0, 1, 2, 3].map((i) => ({ code: i, stdout: `in${round}${i}`, stderr: '' })))
      }
    } finally {
      await warm.closeAll()
    }
  })
})
