import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { until } from '../support/fixtures.js'
import { pidAlive } from '../support/processes.js'
import { tcpProxy, type TcpProxy } from '../support/tcp-proxy.js'

// Every case runs through the start paths: bin/run.js's fast path (src/fast-path.ts) and the full oclif CLI;
// the cases a warm agent does not change also through the thin client (src/thin-client.ts): their home's
// agent and its spare workers are up before the case starts, so its commands run in a spare worker.
describe.each<{ path: string; pathEnv: Record<string, string>; thin?: boolean }>([
  { path: 'fast path', pathEnv: { CRABBOX_NO_THIN_CLIENT: '1' } },
  // Its start-up trace names the path taken: the first case checks that it was the spare worker.
  { path: 'thin client', pathEnv: { CRABBOX_TRACE_START: '1' }, thin: true },
  { path: 'full CLI', pathEnv: { CRABBOX_NO_FAST_PATH: '1' } },
])('crabbox ssh against a real sshd ($path)', ({ pathEnv, thin }) => {
  let host: SshHost
  const homes: CliHome[] = []
  const proxies: TcpProxy[] = []

  const home = (extra: Record<string, string> = {}) => {
    const made = cliHome()
    made.env = { ...made.env, CRABBOX_SSH_KEY: host.privateKeyPath, ...pathEnv, ...extra }
    homes.push(made)
    return made
  }
  /** `home()`; for the thin client with its agent and two spare workers already up. */
  const warmHome = async (extra: Record<string, string> = {}) => {
    const made = home(extra)
    if (!thin) return made
    expect((await runCli(['ssh', ...at(host.address, 22), '--', 'true'], { home: made })).code).toBe(0)
    const runDir = join(made.env.XDG_RUNTIME_DIR, 'crabbox')
    await until('two spare workers', () => readdirSync(runDir).filter((name) => /^spare-\d+\.sock$/.test(name)).length >= 2, 30_000)
    return made
  }
  // Scoped to this host: the machine's process table is shared with every other test host.
  const running = async (pattern: RegExp) => (await host.processes()).some((p) => pattern.test(p.command))
  const at = (address: string, port: number) => ['--provider', 'ssh', '--static-host', address, '--static-port', String(port)]
  const proxied = async () => {
    const proxy = await tcpProxy({ host: host.address, port: 22 })
    proxies.push(proxy)
    return proxy
  }

  beforeAll(async () => {
    host = await sshHost({ ports: [22] })
  })
  afterEach(async () => {
    // Every agent a test started is stopped; its folder goes with the home.
    await Promise.all(homes.splice(0).map((h) => runCli(['agent', 'stop'], { home: h })))
    await Promise.all(proxies.splice(0).map((p) => p.close()))
  })
  afterAll(async () => {
    await host?.stop()
  })

  it('separates stdout from stderr and passes the exit code through', async () => {
    const h = await warmHome()
    const result = await runCli(['ssh', ...at(host.address, 22), '--', 'echo out; echo err >&2; exit 42'], { home: h })
    expect(result.code).toBe(42)
    expect(result.stdout).toBe('out\n')
    expect(result.stderr).toContain('err\n')
    expect(result.stderr).not.toContain('out')
    if (thin) expect(result.stderr).toContain('start-up: thin client: worker started')
    const ok = await runCli(['ssh', ...at(host.address, 22), '--', 'echo', 'two', 'words'], { home: h })
    expect(ok).toMatchObject({ code: 0, stdout: 'two words\n' })
  })

  it('starts without oclif on the fast path and with it on the full CLI; --print always takes the full CLI', async () => {
    // A module hook that reports oclif (its package, the bundled core or a bundled command) being loaded.
    const hook = `export async function load(url, context, next) { if (/@oclif\\/core|\\/dist\\/(oclif\\.js|commands\\/)/.test(url)) process._rawDebug('oclif loaded'); return next(url, context) }`
    const register = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}))`
    const h = home({ NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(register)}` })
    const result = await runCli(['ssh', ...at(host.address, 22), '--', 'echo', 'hi'], { home: h })
    expect(result).toMatchObject({ code: 0, stdout: 'hi\n' })
    expect(result.stderr.includes('oclif loaded'), result.stderr).toBe(pathEnv.CRABBOX_NO_FAST_PATH === '1')
    const print = await runCli(['ssh', ...at(host.address, 22), '--print'], { home: h })
    expect(print.code).toBe(0)
    expect(print.stderr).toContain('oclif loaded')
  })

  it('streams many MB of piped stdin through the agent intact', async () => {
    const input = 'crabbox\n'.repeat(4 * 1024 * 1024) // 32 MiB
    const result = await runCli(['ssh', ...at(host.address, 22), '--', 'sha256sum'], { home: await warmHome(), input })
    expect(result.code).toBe(0)
    expect(result.stdout.split(' ')[0]).toBe(createHash('sha256').update(input).digest('hex'))
  })

  it('reuses the agent connection across CLI processes, then the agent exits when idle', async () => {
    const proxy = await proxied()
    const h = home({ CRABBOX_AGENT_IDLE_TIMEOUT: '3s' })
    const first = await runCli(['ssh', ...at(proxy.host, proxy.port), '--', 'echo one'], { home: h })
    const second = await runCli(['ssh', ...at(proxy.host, proxy.port), '--', 'echo two'], { home: h })
    expect([first.stdout, second.stdout]).toEqual(['one\n', 'two\n'])
    // The second process made no TCP connection of its own: the agent's one connection served both.
    expect(proxy.totalConnections).toBe(1)

    const status = JSON.parse((await runCli(['agent', 'status', '--json'], { home: h })).stdout)
    expect(status.running).toBe(true)
    expect(status.connections).toHaveLength(1)
    const pid: number = status.pid
    await until('the agent to exit', () => !pidAlive(pid), 20_000)
    expect(proxy.liveConnections).toBe(0)
    expect(existsSync(join(h.env.XDG_RUNTIME_DIR, 'crabbox', 'agent.sock'))).toBe(false)
  })

  it('exits 255 quickly when the connection is cut mid-command, and does not re-run it', async () => {
    const proxy = await proxied()
    const h = await warmHome()
    const marker = `/tmp/cut-${process.pid}-${Date.now()}`
    const child = spawnCli(['ssh', ...at(proxy.host, proxy.port), '--', `echo run >> ${marker}; echo started; sleep 60`], { home: h })
    let stdout = ''
    child.stdout!.on('data', (d) => (stdout += d))
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    await until('the command to start', () => stdout.includes('started'), 15_000)
    const cutAt = Date.now()
    proxy.cut()
    expect(await exited).toBe(255)
    expect(Date.now() - cutAt).toBeLessThan(30_000)
    expect((await host.run(`cat ${marker}; rm -f ${marker}`)).stdout).toBe('run\n')
  })

  it('Ctrl-C reaches the remote process and kills it, with stdin open or already at EOF, through the agent and in-process', async () => {
    for (const [stdinOpen, agent] of [
      [false, true],
      [true, true],
      [false, false],
      [true, false],
    ]) {
      const h = agent ? await warmHome() : home({ CRABBOX_NO_AGENT: '1' })
      const child = spawnCli(['ssh', ...at(host.address, 22), '--', 'echo started; sleep 301; echo never'], { home: h })
      if (!stdinOpen) child.stdin!.end() // the common case: nothing piped, the remote sees EOF at once
      let stdout = ''
      child.stdout!.on('data', (d) => (stdout += d))
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
      await until('the command to start', () => stdout.includes('started'), 15_000)
      // The sleep itself, not only the shell whose command line names it: a signal sent before
      // the shell forked it would reach the shell alone.
      await until('the remote sleep to run', () => running(/^sleep 301$/), 15_000)
      child.kill('SIGINT')
      expect(await exited).toBe(130)
      expect(stdout).not.toContain('never')
      await until('the remote sleep to end', async () => !(await running(/sleep 301/)), 3000)
    }
  })

  it('a closed stdout stops the remote command, like a local pipeline (exit 141)', async () => {
    const h = await warmHome()
    const child = spawnCli(['ssh', ...at(host.address, 22), '--', 'yes crabbox-sigpipe-test'], { home: h })
    child.stdin!.end()
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()))
    child.stdout!.destroy() // what `| head -1` does once it has its line
    expect(await exited).toBe(141)
    await until('the remote yes to end', async () => !(await running(/yes crabbox-sigpipe/)), 3000)
  })

  it('fails with exit 7 on a changed host key, showing both fingerprints and how to reset the pin', async () => {
    const h = await warmHome()
    expect((await runCli(['ssh', ...at(host.address, 22), '--', 'true'], { home: h })).code).toBe(0)
    const before = host.hostKeyFingerprint
    await host.restart({ newHostKeys: true })
    await host.killSessions() // the runner was rebuilt: old sessions are gone too (this host's only)
    const result = await runCli(['ssh', ...at(host.address, 22), '--', 'echo should-not-run'], { home: h })
    expect(result.code).toBe(7)
    expect(result.stdout).toBe('')
    expect(result.stderr).toContain(before)
    expect(result.stderr).toContain(host.hostKeyFingerprint)
    expect(result.stderr).toContain('ssh-keygen -R')
    // The pin is per lease, beside its key; the user's own known_hosts is never touched.
    expect(existsSync(join(h.dir, '.ssh', 'known_hosts'))).toBe(false)
  })

  it('--print gives an OpenSSH command line that works with the pinned known_hosts', async () => {
    const h = home()
    expect((await runCli(['ssh', ...at(host.address, 22), '--', 'true'], { home: h })).code).toBe(0)
    const printed = await runCli(['ssh', ...at(host.address, 22), '--print'], { home: h })
    expect(printed.code).toBe(0)
    const line = printed.stdout.trim()
    expect(line).toContain(`-i ${host.privateKeyPath}`)
    expect(line).toContain('UserKnownHostsFile=')
    const words = line.split(' ').map((w) => w.replace(/^~/, h.dir))
    const out = execFileSync(
      words[0],
      [
        ...words.slice(1).map((w) => w.replace('=~', `=${h.dir}`)),
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=yes',
        'echo',
        'via-openssh',
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, HOME: h.dir },
      },
    )
    expect(out).toBe('via-openssh\n')
  })

  it("keeps each user's agent socket private: 0700 folder, 0600 socket, another uid is refused", async () => {
    const a = home()
    const b = home()
    await runCli(['ssh', ...at(host.address, 22), '--', 'true'], { home: a })
    await runCli(['ssh', ...at(host.address, 22), '--', 'true'], { home: b })
    const sockets = [a, b].map((h) => join(h.env.XDG_RUNTIME_DIR, 'crabbox', 'agent.sock'))
    expect(sockets[0]).not.toBe(sockets[1])
    for (const socket of sockets) {
      expect(statSync(socket).mode & 0o777).toBe(0o600)
      expect(statSync(join(socket, '..')).mode & 0o777).toBe(0o700)
    }
    const statusA = JSON.parse((await runCli(['agent', 'status', '--json'], { home: a })).stdout)
    const statusB = JSON.parse((await runCli(['agent', 'status', '--json'], { home: b })).stdout)
    expect(statusA.pid).not.toBe(statusB.pid)
    // Another user (nobody) cannot connect to a's socket.
    const probe = `require('net').connect(${JSON.stringify(sockets[0])}).on('connect',()=>{console.log('connected');process.exit(0)}).on('error',(e)=>{console.log(e.code);process.exit(0)})`
    const seen = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', probe], {
      encoding: 'utf8',
    }).trim()
    expect(seen).toBe('EACCES')
    expect(readFileSync(join(a.env.XDG_RUNTIME_DIR, 'crabbox', 'agent.pid'), 'utf8').trim()).toBe(String(statusA.pid))
  })

  it('without a command and with --tty opens a shell on a pty and passes its exit code through', async () => {
    // stdin here is a pipe: like `ssh -t`, --tty asks for the pty anyway (without it: no pty, see first-hour.test.ts).
    const result = await runCli(['ssh', '--tty', ...at(host.address, 22)], { home: home(), input: 'tty; stty size; exit 3\n' })
    expect(result.code).toBe(3)
    expect(result.stdout).toMatch(/\/dev\/pts\/\d+/)
    expect(result.stdout).toContain('24 80')
  })

  it('--id resolves a lease (the embedded local provider) and runs there', async () => {
    const h = await warmHome()
    const warm = await runCli(['warmup', '--provider', 'local'], { home: h })
    expect(warm.code).toBe(0)
    const id = /leased (\S+)/.exec(warm.stdout + warm.stderr)![1]
    try {
      const result = await runCli(['ssh', '--id', id, '--', 'echo on-lease; exit 6'], { home: h })
      expect(result).toMatchObject({ code: 6, stdout: 'on-lease\n' })
    } finally {
      await runCli(['stop', id], { home: h })
    }
  })

  it('connects from its own process when the agent cannot start', async () => {
    const h = home({ XDG_RUNTIME_DIR: '/dev/null/not-a-dir' })
    const result = await runCli(['ssh', ...at(host.address, 22), '--', 'echo fallback; exit 9'], { home: h })
    expect(result).toMatchObject({ code: 9, stdout: 'fallback\n' })
    expect(result.stderr).toContain('agent unavailable')
  })

  it('works without the agent when CRABBOX_NO_AGENT=1', async () => {
    const h = home({ CRABBOX_NO_AGENT: '1' })
    const result = await runCli(['ssh', ...at(host.address, 22), '--', 'echo direct; exit 5'], { home: h })
    expect(result).toMatchObject({ code: 5, stdout: 'direct\n' })
    expect(existsSync(join(h.env.XDG_RUNTIME_DIR, 'crabbox', 'agent.sock'))).toBe(false)
  })
})
