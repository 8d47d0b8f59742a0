import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  cliHome,
  cliPath,
  exitAfterStdoutCloses,
  repoRoot,
  runCli,
  spareSockets,
  startCli,
  withoutTrace,
  type CliHome,
} from '../support/cli.js'
import { until } from '../support/fixtures.js'
import { copyPackage } from '../support/package-copy.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { buildStamp, encodeFrame, Frame, frameDecoder } from '../../src/transport/ssh/agent-frames.js'

// The thin client (src/thin-client.ts): with the agent up, a hot command runs in one of the agent's
// spare workers (src/warm-worker.ts); anything unusual falls back to the fast path in the CLI's own
// process. `CRABBOX_TRACE_START=1` tells which path ran: the thin client's phases are prefixed.
const THIN = 'start-up: thin client: worker started'
const FELL_BACK = 'start-up: thin client: falls back to the fast path'

describe('the thin client against a real sshd', () => {
  let host: SshHost
  const homes: CliHome[] = []
  const servers: Server[] = []

  const runDir = (h: CliHome) => join(h.env.XDG_RUNTIME_DIR, 'crabbox')
  const spares = (h: CliHome) => spareSockets(h).length
  const home = (extra: Record<string, string> = {}) => {
    const made = cliHome()
    // The spare worker's path: the agent lane, which may take a repeated `ssh --id` or `run --no-sync`, has its own file (agent-lane.test.ts).
    made.env = { ...made.env, CRABBOX_SSH_KEY: host.privateKeyPath, CRABBOX_TRACE_START: '1', CRABBOX_NO_AGENT_LANE: '1', ...extra }
    homes.push(made)
    return made
  }
  const at = (port = 22) => ['--provider', 'ssh', '--static-host', host.address, '--static-port', String(port)]
  /** A home whose agent runs with its spare workers ready. */
  const warmHome = async (extra: Record<string, string> = {}, cli?: string) => {
    const h = home(extra)
    expect((await runCli(['ssh', ...at(), '--', 'true'], { home: h, cli })).code).toBe(0)
    await until('two spare workers', () => spares(h) >= 2, 30_000)
    return h
  }

  beforeAll(async () => {
    host = await sshHost({ ports: [22] })
  })
  afterEach(async () => {
    await Promise.all(homes.splice(0).map((h) => runCli(['agent', 'stop'], { home: h })))
    for (const server of servers.splice(0)) server.close()
  })
  afterAll(async () => {
    await host?.stop()
  })

  it('runs in a spare worker with the same stdout/stderr split, exit code and stdin as the fast path', async () => {
    const h = await warmHome()
    const command = ['ssh', ...at(), '--', 'echo out; echo err >&2; cat; exit 42']
    const thin = await runCli(command, { home: h, input: 'piped in\n' })
    expect(thin.stderr).toContain(THIN)
    expect(thin.code).toBe(42)
    expect(thin.stdout).toBe('out\npiped in\n')
    expect(withoutTrace(thin.stderr)).toContain('err\n')
    const fast = await runCli(command, { home: h, input: 'piped in\n', env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect(fast.stderr).not.toContain('thin client')
    expect({ code: fast.code, stdout: fast.stdout }).toEqual({ code: thin.code, stdout: thin.stdout })
    // The worker starts its replacement; a later command finds one again.
    await until('a spare again', () => spares(h) >= 1, 30_000)
    const again = await runCli(['ssh', ...at(), '--', 'echo', 'two', 'words'], { home: h })
    expect(again).toMatchObject({ code: 0, stdout: 'two words\n' })
    expect(again.stderr).toContain(THIN)
  })

  it('gives a command reading stdin from /dev/null its end at once, in the worker as on the fast path', async () => {
    const h = await warmHome()
    const command = ['ssh', ...at(), '--', 'cat; echo "cat exited $?"']
    const thin = await runCli(command, { home: h, stdin: 'ignore' })
    expect(thin.stderr).toContain(THIN)
    expect(thin).toMatchObject({ code: 0, stdout: 'cat exited 0\n' })
    const fast = await runCli(command, { home: h, stdin: 'ignore', env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect(fast).toMatchObject({ code: 0, stdout: 'cat exited 0\n' })
  })

  it('passes many MB of stdin and stdout through the worker intact', async () => {
    const h = await warmHome()
    const input = 'x'.repeat(1023) + '\n'
    const result = await runCli(['ssh', ...at(), '--', 'wc -c; seq 1 300000'], { home: h, input: input.repeat(8 * 1024) })
    expect(result.stderr).toContain(THIN)
    expect(result.code).toBe(0)
    const lines = result.stdout.split('\n')
    expect(lines[0].trim()).toBe(String(8 * 1024 * 1024))
    expect(lines.slice(1, -1)).toEqual(Array.from({ length: 300000 }, (_, i) => String(i + 1)))
  })

  it('forwards Ctrl-C to the worker: the remote command is killed and the CLI exits 130', async () => {
    const h = await warmHome()
    const { child, output, exited } = startCli(['ssh', ...at(), '--', 'echo started; sleep 302; echo never'], { home: h })
    await until('the command to start', () => output.stdout.includes('started'), 15_000)
    // The sleep itself, not only the shell whose command line names it (see ssh-command.test.ts).
    await until('the remote sleep to run', async () => (await host.processes()).some((p) => /^sleep 302$/.test(p.command)), 15_000)
    child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(output.stderr).toContain(THIN)
    expect(output.stdout).not.toContain('never')
    await until('the remote sleep to end', async () => !(await host.processes()).some((p) => /sleep 302/.test(p.command)), 5000)
  })

  it('a closed stdout stops the remote command (exit 141)', async () => {
    const h = await warmHome()
    expect(await exitAfterStdoutCloses(['ssh', ...at(), '--', 'yes crabbox-thin-sigpipe'], { home: h })).toBe(141)
    await until('the remote yes to end', async () => !(await host.processes()).some((p) => /yes crabbox-thin/.test(p.command)), 5000)
  })

  it('reads the config file afresh on every command', async () => {
    const h = await warmHome()
    const config = join(h.env.XDG_CONFIG_HOME, 'crabbox', 'config.yaml')
    mkdirSync(join(config, '..'), { recursive: true })
    writeFileSync(config, `provider: ssh\nstatic:\n  host: ${host.address}\n  port: 22\n`)
    const first = await runCli(['ssh', '--', 'echo', 'from-config'], { home: h })
    expect(first).toMatchObject({ code: 0, stdout: 'from-config\n' })
    expect(first.stderr).toContain(THIN)
    await until('a spare again', () => spares(h) >= 1, 30_000)
    // Port 1 is closed: the new value must be used, and fail as the fast path fails.
    writeFileSync(config, `provider: ssh\nstatic:\n  host: ${host.address}\n  port: 1\n`)
    const second = await runCli(['ssh', '--', 'echo', 'from-config'], { home: h })
    expect(second.stderr).toContain(THIN)
    expect(second.code).not.toBe(0)
    expect(second.stdout).toBe('')
    const fast = await runCli(['ssh', '--', 'echo', 'from-config'], { home: h, env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect({ code: second.code, stderr: withoutTrace(second.stderr) }).toEqual({ code: fast.code, stderr: withoutTrace(fast.stderr) })
  })

  it('run --id and ssh --id of a lease match the fast path', async () => {
    const h = await warmHome({
      CRABBOX_PROVIDER: 'ssh',
      CRABBOX_STATIC_HOST: host.address,
      CRABBOX_STATIC_PORT: '22',
      CRABBOX_STATIC_USER: host.user,
      CRABBOX_STATIC_WORK_ROOT: `${host.home}/work`,
    })
    const warm = await runCli(['warmup', '--json'], { home: h })
    expect(warm.code).toBe(0)
    const { id } = JSON.parse(warm.stdout) as { id: string }
    await until('a spare', () => spares(h) >= 1, 30_000)
    const live = await runCli(['ssh', '--id', id, '--', 'echo', 'leased'], { home: h })
    expect(live).toMatchObject({ code: 0, stdout: 'leased\n' })
    expect(live.stderr).toContain(THIN)
    await until('a spare', () => spares(h) >= 1, 30_000)
    const runArgs = ['run', '--id', id, '--no-sync', '--', 'sh', '-c', 'echo run-out; echo run-err >&2; exit 3']
    const thinRun = await runCli(runArgs, { home: h })
    expect(thinRun.stderr).toContain(THIN)
    expect(thinRun).toMatchObject({ code: 3, stdout: 'run-out\n' })
    expect(thinRun.stderr).toMatch(/^run-err$/m)
    const fastRun = await runCli(runArgs, { home: h, env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect({ code: fastRun.code, stdout: fastRun.stdout }).toEqual({ code: thinRun.code, stdout: thinRun.stdout })
    expect((await runCli(['stop', id], { home: h })).code).toBe(0)
  })

  it('run --id --no-sync makes a missing workdir and runs in it, in the worker as on the fast path', async () => {
    const workRoot = `${host.home}/work-nosync-${Date.now()}`
    const h = await warmHome({
      CRABBOX_PROVIDER: 'ssh',
      CRABBOX_STATIC_HOST: host.address,
      CRABBOX_STATIC_PORT: '22',
      CRABBOX_STATIC_USER: host.user,
      CRABBOX_STATIC_WORK_ROOT: workRoot,
    })
    const warm = await runCli(['warmup', '--json'], { home: h })
    expect(warm.code).toBe(0)
    const { id } = JSON.parse(warm.stdout) as { id: string }
    const runArgs = ['run', '--id', id, '--no-sync', '--', 'sh', '-c', 'pwd; echo marked > here']
    await until('a spare', () => spares(h) >= 1, 30_000)
    // Nothing made the workdir yet: the command's own exec makes it.
    expect((await host.run(`test -d ${workRoot} && echo there || echo missing`)).stdout.trim()).toBe('missing')
    const first = await runCli(runArgs, { home: h })
    expect(first.stderr).toContain(THIN)
    expect(first.code, first.stderr).toBe(0)
    const workdir = first.stdout.trim()
    expect(workdir.startsWith(`${workRoot}/`)).toBe(true)
    expect((await host.run(`cat ${workdir}/here`)).stdout).toBe('marked\n')
    // There now: the same folder, in the worker and on the fast path.
    await until('a spare', () => spares(h) >= 1, 30_000)
    const again = await runCli(runArgs, { home: h })
    expect(again.stderr).toContain(THIN)
    expect({ code: again.code, stdout: again.stdout }).toEqual({ code: 0, stdout: `${workdir}\n` })
    const fast = await runCli(runArgs, { home: h, env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect({ code: fast.code, stdout: fast.stdout }).toEqual({ code: 0, stdout: `${workdir}\n` })
    // A workdir that cannot be made fails the run before the command, as `mkdir -p` says.
    await host.run(`rm -rf ${workRoot} && touch ${workRoot}`)
    await until('a spare', () => spares(h) >= 1, 30_000)
    const blocked = await runCli(runArgs, { home: h })
    expect(blocked.stderr).toContain(THIN)
    expect(blocked.code).not.toBe(0)
    expect(blocked.stdout).toBe('')
    expect(blocked.stderr).toMatch(/mkdir/)
    await host.run(`rm -f ${workRoot}`)
    expect((await runCli(['stop', id], { home: h })).code).toBe(0)
  })

  it('a released lease fails through the worker exactly as through the fast path', async () => {
    const h = await warmHome()
    const warm = await runCli(['warmup', '--provider', 'local'], { home: h })
    expect(warm.code).toBe(0)
    const id = /leased (\S+)/.exec(warm.stdout + warm.stderr)![1]
    await until('a spare', () => spares(h) >= 1, 30_000)
    const live = await runCli(['ssh', '--id', id, '--', 'echo on-lease; exit 6'], { home: h })
    expect(live).toMatchObject({ code: 6, stdout: 'on-lease\n' })
    expect(live.stderr).toContain(THIN)
    expect((await runCli(['stop', id], { home: h })).code).toBe(0)
    await until('a spare', () => spares(h) >= 1, 30_000)
    const thin = await runCli(['ssh', '--id', id, '--', 'echo on-lease'], { home: h })
    expect(thin.stderr).toContain(THIN)
    expect(thin.code).not.toBe(0)
    const fast = await runCli(['ssh', '--id', id, '--', 'echo on-lease'], { home: h, env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect({ code: thin.code, stdout: thin.stdout, stderr: withoutTrace(thin.stderr) }).toEqual({
      code: fast.code,
      stdout: fast.stdout,
      stderr: withoutTrace(fast.stderr),
    })
  })

  it('falls back to the fast path with no agent, with CRABBOX_NO_THIN_CLIENT=1, and with a wedged worker', async () => {
    // No agent yet: the fast path runs (and starts the agent).
    const cold = await runCli(['ssh', ...at(), '--', 'echo', 'cold'], { home: home() })
    expect(cold).toMatchObject({ code: 0, stdout: 'cold\n' })
    expect(cold.stderr).not.toContain(THIN)

    const h = await warmHome()
    const off = await runCli(['ssh', ...at(), '--', 'echo', 'off'], { home: h, env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect(off).toMatchObject({ code: 0, stdout: 'off\n' })
    expect(off.stderr).not.toContain('thin client')

    // A worker socket that takes the connection and never answers.
    const wedgedHome = home()
    mkdirSync(runDir(wedgedHome), { recursive: true, mode: 0o700 })
    const server = createServer(() => {})
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(join(runDir(wedgedHome), 'spare-7.sock'), resolve))
    const wedged = await runCli(['ssh', ...at(), '--', 'echo', 'not-stuck'], { home: wedgedHome })
    expect(wedged).toMatchObject({ code: 0, stdout: 'not-stuck\n' })
    expect(wedged.stderr).toContain(FELL_BACK)
    expect(wedged.stderr).not.toContain(THIN)
  })

  it('a rebuilt crabbox falls back once, then finds spares of the new build', async () => {
    // A private copy of the package: the e2e files running meanwhile share the run's copy, and
    // their thin clients would fall back while its dist/fast-path.js carries another stamp.
    const scratch = mkdtempSync(join(tmpdir(), 'crabbox-rebuilt-'))
    try {
      const cli = join(copyPackage(dirname(dirname(cliPath)), join(scratch, 'crabbox')), 'bin', 'run.js')
      const h = await warmHome({}, cli)
      // What a rebuild or an upgrade changes in the build stamp: dist/fast-path.js's mtime.
      const fastPath = join(dirname(cli), '..', 'dist', 'fast-path.js')
      const { atime, mtime } = statSync(fastPath)
      utimesSync(fastPath, atime, new Date(mtime.getTime() + 1000))
      const rebuilt = await runCli(['ssh', ...at(), '--', 'echo', 'rebuilt'], { home: h, cli })
      expect(rebuilt).toMatchObject({ code: 0, stdout: 'rebuilt\n' })
      expect(rebuilt.stderr).toContain(FELL_BACK)
      expect(rebuilt.stderr).not.toContain(THIN)
      // The declined spare left; its replacement loads the new build.
      await until(
        'a spare of the new build',
        async () => {
          const next = await runCli(['ssh', ...at(), '--', 'echo', 'new'], { home: h, cli })
          expect(next).toMatchObject({ code: 0, stdout: 'new\n' })
          return next.stderr.includes(THIN)
        },
        30_000,
        500,
      )
      await runCli(['agent', 'stop'], { home: h, cli })
    } finally {
      rmSync(scratch, { recursive: true, force: true })
    }
  })

  it('a request without a claim is declined before anything runs: its client falls back, the command runs once', async () => {
    const h = await warmHome()
    const marker = `${host.home}/crabbox-thin-no-claim-${Date.now()}`
    const fastPath = join(dirname(cliPath), '..', 'dist', 'fast-path.js')
    const names = () => spareSockets(h)
    const before = names()
    const command = `echo ran >> ${marker}`
    const argv = ['ssh', ...at(), '--', command]
    const env = { ...process.env, ...h.env } as Record<string, string>
    const socket = connect(join(runDir(h), before[0]))
    socket.on('error', () => {})
    const answers: [number, string][] = []
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    socket.on(
      'data',
      frameDecoder((type, payload) => answers.push([type, payload.toString('utf8')])),
    )
    socket.on('end', () => socket.end())
    // What a hand-written client (or one of an older build) sends: no `claim`.
    socket.write(encodeFrame(Frame.request, { build: buildStamp(fastPath, env), argv, bin: cliPath, cwd: repoRoot, env }))
    await closed
    expect(answers.map(([type]) => type)).toEqual([Frame.result])
    expect(JSON.parse(answers[0][1])).toMatchObject({ ok: false, error: { message: 'bad request', code: 'declined' } })
    expect((await host.run(`test -e ${marker} && echo ran || echo never`)).stdout.trim()).toBe('never')
    // The client falls back and runs the command itself; the worker that declined never runs it.
    const fallback = await runCli(['ssh', ...at(), '--', command], { home: h, env: { CRABBOX_NO_THIN_CLIENT: '1' } })
    expect(fallback).toMatchObject({ code: 0 })
    // A bad request does not use the spare up: it is still there, and the next command runs thin.
    expect(names()).toContain(before[0])
    const next = await runCli(['ssh', ...at(), '--', 'echo', 'next'], { home: h })
    expect(next).toMatchObject({ code: 0, stdout: 'next\n' })
    expect(next.stderr).toContain(THIN)
    expect((await host.run(`cat ${marker}`)).stdout).toBe('ran\n')
  })

  it('with a claim the command runs once: never when the client claimed it first, at once when the worker did', async () => {
    const h = await warmHome()
    const fastPath = join(dirname(cliPath), '..', 'dist', 'fast-path.js')
    const env = { ...process.env, ...h.env } as Record<string, string>
    const spareNames = () => spareSockets(h)
    /** Sends a request with `claim` to a spare; resolves with the frame types it answered until it closed. */
    const ask = (spare: string, marker: string, claim: string) =>
      new Promise<number[]>((resolve) => {
        const types: number[] = []
        const socket = connect(join(runDir(h), spare))
        socket.on(
          'data',
          frameDecoder((type) => types.push(type)),
        )
        socket.on('end', () => socket.end())
        socket.on('close', () => resolve(types))
        const argv = ['ssh', ...at(), '--', 'mkdir', marker]
        socket.write(encodeFrame(Frame.request, { build: buildStamp(fastPath, env), argv, bin: cliPath, cwd: repoRoot, env, claim }))
      })
    // A client that gave up waiting made the claim first (and runs the command itself): the worker declines.
    const lost = `${host.home}/crabbox-thin-claim-lost-${Date.now()}`
    // Claims name their client's pid: this test stands for a client that is still waiting.
    const own = (suffix: string) => `claim-${process.pid.toString(16)}-${suffix}`
    const taken = own('a')
    writeFileSync(join(runDir(h), taken), '')
    expect(await ask(spareNames()[0], lost, taken)).toEqual([Frame.result])
    expect((await host.run(`test -e ${lost} && echo ran || echo never`)).stdout.trim()).toBe('never')
    // The worker that lost removed the claim: nobody else will ask for it.
    expect(readdirSync(runDir(h))).not.toContain(taken)
    // The worker made the claim first: it runs the command at once, and once.
    await until('a spare', () => spareNames().length >= 1, 30_000)
    const won = `${host.home}/crabbox-thin-claim-won-${Date.now()}`
    const types = await ask(spareNames()[0], won, own('b'))
    expect(types[0]).toBe(Frame.started)
    expect(types.at(-1)).toBe(Frame.result)
    expect((await host.run(`test -d ${won} && echo ran || echo never`)).stdout.trim()).toBe('ran')
    expect(readdirSync(runDir(h))).toContain(own('b')) // the client removes it once it has the exit code
    // A request whose client has ended (killed after it asked, or a worker that stalled past it):
    // nobody waits for the command, and the agent may have swept the claim, so it never runs.
    await until('a spare', () => spareNames().length >= 1, 30_000)
    const orphan = `${host.home}/crabbox-thin-claim-orphan-${Date.now()}`
    const ended = spawnSync('true').pid!
    expect(await ask(spareNames()[0], orphan, `claim-${ended.toString(16)}-c`)).toEqual([Frame.result])
    expect((await host.run(`test -e ${orphan} && echo ran || echo never`)).stdout.trim()).toBe('never')
  })

  it('a finished worker stays until its client closes: a frame the client writes after the exit code still lands', async () => {
    // The thin client may write the end of its stdin just as the command finishes: a worker
    // that exited at once made that write fail, and the failed write lost the exit code.
    const h = await warmHome()
    const fastPath = join(dirname(cliPath), '..', 'dist', 'fast-path.js')
    const name = readdirSync(runDir(h)).find((entry) => /^spare-\d+\.sock$/.test(entry))!
    const env = { ...process.env, ...h.env } as Record<string, string>
    const socket = connect({ path: join(runDir(h), name), allowHalfOpen: true })
    socket.on('error', () => {})
    const result = new Promise<{ result?: { code?: number } }>((resolve) =>
      socket.on(
        'data',
        frameDecoder((type, payload) => {
          if (type === Frame.result) resolve(JSON.parse(payload.toString('utf8')))
        }),
      ),
    )
    const argv = ['ssh', ...at(), '--', 'true']
    const claim = `claim-${process.pid.toString(16)}-c`
    socket.write(encodeFrame(Frame.request, { build: buildStamp(fastPath, env), argv, bin: cliPath, cwd: repoRoot, env, claim }))
    expect((await result).result?.code).toBe(0)
    rmSync(join(runDir(h), claim), { force: true }) // the client's part once it has the exit code
    await new Promise((resolve) => setTimeout(resolve, 300))
    const late = await new Promise<Error | null | undefined>((resolve) => socket.write(encodeFrame(Frame.stdinEnd), resolve))
    expect(late ?? undefined).toBeUndefined()
    socket.destroy()
  })

  it('does not use a folder that is not private: loose permissions, or another owner', async () => {
    const h = await warmHome()
    chmodSync(runDir(h), 0o755)
    const loose = await runCli(['ssh', ...at(), '--', 'echo', 'loose'], { home: h })
    expect(loose).toMatchObject({ code: 0, stdout: 'loose\n' })
    expect(loose.stderr).not.toContain(THIN)
    // The fast path tightened the folder again: the next command is thin.
    expect(statSync(runDir(h)).mode & 0o777).toBe(0o700)
    const tight = await runCli(['ssh', ...at(), '--', 'echo', 'tight'], { home: h })
    expect(tight.stderr).toContain(THIN)

    await until('a spare', () => spares(h) >= 1, 30_000)
    chownSync(runDir(h), 65534, 65534)
    try {
      const foreign = await runCli(['ssh', ...at(), '--', 'echo', 'foreign'], { home: h })
      expect(foreign).toMatchObject({ code: 0, stdout: 'foreign\n' })
      expect(foreign.stderr).not.toContain(THIN)
    } finally {
      chownSync(runDir(h), process.getuid!(), process.getgid!())
    }
  })
})
