import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { sleep, until } from '../support/fixtures.js'
import { commandOf, processesMatching, rssMiB } from '../support/processes.js'
import { tcpProxy, type TcpProxy } from '../support/tcp-proxy.js'
import { SshPool } from '../../src/transport/ssh/pool.js'
import type { SshTarget } from '../../src/transport/ssh/types.js'
import { CrabboxError } from '../../src/errors.js'

// The `local` provider's runner (src/providers/local/server-main.ts), driven over SSH like any runner.
/** A live runner (not a zombie left for a parent that already exited: its command line is empty). */
const alive = (pid: number) => commandOf(pid)?.includes('server-main') ?? false
/** A `sleep` duration no other test uses, to find the command in the process table. */
const uniqueSleep = () => `300.${process.pid}${Date.now() % 1_000_000}`
/** Whether a process of this machine has `marker` in its command line. */
const running = (marker: string) => processesMatching(marker).length > 0

interface Runner {
  home: CliHome
  id: string
  pid: number
  dir: string
  target: SshTarget
}

describe('the local runner', () => {
  const homes: CliHome[] = []
  const proxies: TcpProxy[] = []
  const pool = new SshPool()

  async function warm(flags: string[] = []): Promise<Runner> {
    const home = cliHome()
    homes.push(home)
    const result = await runCli(['warmup', '--provider', 'local', ...flags], { home, env: { CRABBOX_NO_AGENT: '1' } })
    expect(result.code).toBe(0)
    const id = /leased (\S+)/.exec(result.stdout + result.stderr)![1]
    const dir = join(home.env.XDG_STATE_HOME, 'crabbox', 'local', id)
    const record = JSON.parse(readFileSync(join(dir, 'lease.json'), 'utf8'))
    const target = {
      host: '127.0.0.1',
      port: record.port,
      fallbackPorts: [],
      user: record.user,
      privateKeyPath: record.privateKeyPath,
      knownHostsPath: record.knownHostsPath,
    }
    return { home, id, pid: record.pid, dir, target }
  }
  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.close()))
    await pool.closeAll()
  })
  afterAll(async () => {
    for (const home of homes) {
      const leases = join(home.env.XDG_STATE_HOME, 'crabbox', 'local')
      for (const id of existsSync(leases) ? readdirSync(leases) : []) await runCli(['stop', id], { home })
    }
  })

  it('runs with cwd and env, passes exit codes and signals through, and stops a command on Ctrl-C', async () => {
    const runner = await warm()
    let out = ''
    const result = await pool.exec(runner.target, 'pwd; echo "$GREETING"; exit 3', {
      cwd: '/tmp',
      env: { GREETING: "it's here" },
      onStdout: (c) => (out += c),
    })
    expect(result).toEqual({ code: 3 })
    expect(out).toBe("/tmp\nit's here\n")
    expect(await pool.exec(runner.target, 'kill -TERM $$')).toEqual({ code: null, signal: 'SIGTERM' })

    const marker = uniqueSleep()
    const abort = new AbortController()
    let started = false
    const outcome = pool.exec(runner.target, `echo started; exec sleep ${marker}`, {
      stdin: '',
      signal: abort.signal,
      onStdout: () => (started = true),
    })
    await until('the command to start', () => started && running(marker), 15_000)
    abort.abort('SIGINT')
    expect(await outcome).toEqual({ code: null, signal: 'SIGINT' })
    await until('the command to end', () => !running(marker), 3000)
    await runCli(['stop', runner.id], { home: runner.home })
  })

  it('stops the command of a client whose connection dropped, then exits when idle and removes its workspace', async () => {
    const runner = await warm(['--idle-timeout', '4s'])
    const proxy = await tcpProxy({ host: '127.0.0.1', port: runner.target.port })
    proxies.push(proxy)
    const marker = uniqueSleep()
    let started = false
    const outcome = pool
      .exec({ ...runner.target, host: proxy.host, port: proxy.port }, `echo started; exec sleep ${marker}`, {
        onStdout: () => (started = true),
      })
      .catch((e) => e)
    await until('the command to start', () => started && running(marker), 15_000)
    proxy.cut()
    const error = await outcome
    expect(error).toBeInstanceOf(CrabboxError)
    expect(error.exitCode).toBe(255)
    // The runner noticed: the orphaned command is stopped, not left for the lease's TTL.
    await until('the command to end', () => !running(marker), 10_000)
    // Nothing runs now, so the idle timeout applies: the runner exits and its workspace goes.
    await until('the runner to exit', () => !alive(runner.pid), 20_000)
    expect(existsSync(runner.dir)).toBe(false)
  })

  it('holds a fast command back while the client does not read, and delivers every byte', async () => {
    const runner = await warm()
    const size = 256 * 1024 * 1024
    const { PassThrough } = await import('node:stream')
    const slow = new PassThrough({ highWaterMark: 64 * 1024 })
    let received = 0
    const outcome = pool.exec(runner.target, `head -c ${size} /dev/zero`, { stdout: slow })
    await sleep(3000) // nobody reads `slow`: the runner must not buffer the command's output
    const rss = rssMiB(runner.pid)
    expect(rss).toBeLessThan(200)
    slow.on('data', (c: Buffer) => (received += c.length))
    expect(await outcome).toEqual({ code: 0 })
    expect(received).toBe(size)
    expect(execFileSync('sh', ['-c', `test -d ${runner.dir} && echo yes`], { encoding: 'utf8' })).toBe('yes\n')
    await runCli(['stop', runner.id], { home: runner.home })
    expect(existsSync(runner.dir)).toBe(false)
    expect(alive(runner.pid)).toBe(false)
  })
})
