import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { CrabboxError, failureText } from '../../errors.js'
import { pidRuns } from '../../pids.js'
import { startUpLine } from '../../start-marks.js'
import { fastCommand, truthy } from '../../fast-argv.js'
import { takeClaim } from './agent-frames.js'
import { sweepClaims } from './claim-sweep.js'
import { type LaneRunner, LaneRoutes, laneKey } from './agent-lane.js'
import { exitCodeOf } from './exec.js'
import { AgentRequest, AgentSignal, type AgentReply, encodeFrame, Frame, frameDecoder, parseJson } from './agent-protocol.js'
import { SpareWorkers } from './agent-spare.js'
import { listenPrivately } from './private-socket.js'
import { Watchers } from './agent-watch.js'
import { SshPool } from './pool.js'
import { afterDrain, writeOrPause } from './streams.js'
import type { ExecOptions, SshTarget } from './types.js'

export interface AgentServerOptions {
  /** The 0700 folder holding `agent.sock` and `agent.pid`. */
  dir: string
  idleTimeoutMs: number
  log?: (line: string) => void
  /** The lane runners beyond `ssh` (src/agent-main.ts gives the run pipeline's). */
  lanes?: LaneRunners
}

const agentSocketPath = (dir: string) => join(dir, 'agent.sock')
const agentPidPath = (dir: string) => join(dir, 'agent.pid')

const describeTarget = (t: SshTarget) => `${t.user}@${t.host}:${t.port}`

/** Any failure of a request as ours: anything else is an SSH failure (exit 7). */
const asAgentFailure = (error: unknown): CrabboxError =>
  error instanceof CrabboxError ? error : new CrabboxError((error as Error)?.message ?? String(error), { exit: 'ssh' })

function toReplyError(error: unknown): AgentReply {
  const { message, exitCode, code, hint } = asAgentFailure(error)
  return { ok: false, error: { message, exitCode, code, hint } }
}

/** Whether `pid` is a running agent; a pid reused by another program does not count. */
const agentAlive = (pid: number) => pidRuns(pid, 'agent-main')

/**
 * Output frames with backpressure: while the CLI does not read its socket, the
 * writer does not complete, the SSH channel piped into it pauses, and the
 * remote command blocks instead of the agent buffering without bound.
 */
function frameWriter(socket: Socket, type: number, opened?: Promise<void>): Writable {
  const send = (chunk: Buffer, done: () => void) => {
    if (socket.destroyed) return done()
    if (socket.write(encodeFrame(type, chunk))) return done()
    afterDrain(socket, () => done())
  }
  return new Writable({
    // `opened`: held until the command began (a lane command declined before then sent nothing).
    write: (chunk: Buffer, _encoding, done) => (opened ? void opened.then(() => send(chunk, done)) : send(chunk, done)),
  })
}

/**
 * One agent per folder: the pid file is created exclusively; a stale one is taken over.
 * False when a live agent already owns the folder.
 */
function claimPidFile(pidPath: string, log: (line: string) => void): boolean {
  try {
    const fd = openSync(pidPath, 'wx', 0o600)
    writeFileSync(fd, String(process.pid))
    closeSync(fd)
  } catch {
    const owner = Number(readFileSync(pidPath, 'utf8').trim())
    if (owner && owner !== process.pid && agentAlive(owner)) {
      log(`agent ${owner} already runs here`)
      return false
    }
    writeFileSync(pidPath, String(process.pid), { mode: 0o600 })
  }
  return true
}

const replyTo = (socket: Socket, body: AgentReply) => {
  if (!socket.destroyed) socket.end(encodeFrame(Frame.result, body))
}

/**
 * Runs a client's command on the pooled connection, streaming its output back as frames;
 * `connect-exec` connects first (from the pool when held) and says `connected`.
 */
async function execForClient(
  pool: SshPool,
  socket: Socket,
  request: Extract<AgentRequest, { op: 'exec' | 'connect-exec' }>,
  stdin: PassThrough | undefined,
  signal: AbortSignal,
): Promise<void> {
  if (request.op === 'connect-exec') {
    // Connection errors answer the request as `connect` would; the client sends stdin only after `connected`.
    let port: number
    try {
      port = (await pool.connection(request.target, { connectTimeoutMs: request.connectTimeoutMs })).port
    } catch (error) {
      return replyTo(socket, toReplyError(error))
    }
    if (socket.destroyed) return // the CLI went away (Ctrl-C) before anything ran
    socket.write(encodeFrame(Frame.connected, { port }))
  }
  const stdout = frameWriter(socket, Frame.stdout)
  const stderr = frameWriter(socket, Frame.stderr)
  const body: AgentReply = await pool
    .exec(request.target, request.command, { cwd: request.cwd, env: request.env, stdin, signal, stdout, stderr })
    .then(
      (result): AgentReply => ({ ok: true, result }),
      (error): AgentReply => toReplyError(error),
    )
  // Output still queued behind a full socket goes out before the result.
  await Promise.all([stdout, stderr].map((w) => new Promise<void>((resolve) => w.end(resolve))))
  replyTo(socket, body)
}

/** What a client sends after its request: stdin and its end, a signal, and (a thin client) a closed stdout. */
class ClientStreams {
  stdin: PassThrough | undefined
  readonly closed = new Set<'stdout' | 'stderr'>()
  readonly abort = new AbortController()
  /** A second signal (a `run` on the lane ends at once, as the CLI exits on its second Ctrl-C). */
  readonly again = new AbortController()

  constructor(private readonly socket: Socket) {}

  frame(type: number, payload: Buffer): void {
    if (type === Frame.stdin) {
      // Backpressure: stop reading the CLI until the SSH channel drains.
      if (this.stdin) writeOrPause(this.stdin, payload, this.socket)
    } else if (type === Frame.stdinEnd || type === Frame.stdinError) {
      this.stdin?.end()
    } else if (type === Frame.signal) {
      const { name } = parseJson(AgentSignal, payload)
      if (this.abort.signal.aborted) this.again.abort(name)
      this.stop(name)
    } else if (type === Frame.outputClosed) {
      const name = payload.toString('utf8')
      if (name !== 'stdout' && name !== 'stderr') return
      this.closed.add(name)
      // As the spare worker does on EPIPE: the remote command is stopped, the exit code says SIGPIPE.
      if (name === 'stdout') this.stop('SIGTERM')
    }
  }

  hangUp(): void {
    this.stop('SIGHUP')
    this.stdin?.destroy()
  }

  private stop(signal: string): void {
    if (!this.abort.signal.aborted) this.abort.abort(signal)
  }
}

/**
 * `CRABBOX_TRACE_START=1` in a lane command's environment: the agent's own phases, as the
 * `start-up:` lines of the fast path (`startUpLine`), written to the command's stderr after it
 * ended, so the marks cost the command nothing. `npm run bench -- ssh --trace N` reads them.
 */
class LaneMarks {
  private last = performance.now()
  private readonly lines: string[] = []

  static for(env: Record<string, string>): LaneMarks | undefined {
    return truthy(env.CRABBOX_TRACE_START) ? new LaneMarks() : undefined
  }

  mark(phase: string): void {
    const now = performance.now()
    this.lines.push(startUpLine(`agent lane: ${phase}`, now - this.last))
    this.last = now
  }

  text(): string {
    return this.lines.join('')
  }
}

const declined = (why: string): AgentReply => ({ ok: false, error: { message: why, exitCode: 1, code: 'declined' } })

/** The extra lane runners the agent was started with (agent-lane.ts, `LaneRunner`). */
export interface LaneRunners {
  run?: LaneRunner
}

/**
 * An `ssh` command on the lane: the words after the route's prefix, the exit code the command's
 * process would end with (the remote status, 128 + its signal, 141 after a closed stdout).
 */
const sshOnLane: LaneRunner = async ({ route, fast, exec, stdin, stop, stdout, stderr, closed, begin }) => {
  begin()
  const result = await exec(route.prefix + fast.words.join(' '), { stdin, signal: stop, stdout, stderr })
  return exitCodeOf(closed.has('stdout') ? { code: null, signal: 'SIGPIPE' } : result)
}

/**
 * The agent lane (agent-lane.ts): a thin client's `ssh --id X -- <cmd>` or `run --id X … -- <cmd>`
 * run here on the route a spare worker filed, in the spare worker's frames: `started` once the
 * runner begins the command (its claim made first), the output, and the exit code. Without a
 * route, or when the runner declines before it began, nothing ran: the client takes a spare worker.
 */
async function laneForClient(
  pool: SshPool,
  lanes: LaneRunners & { routes: LaneRoutes; dir: string; watchers: Watchers },
  socket: Socket,
  request: Extract<AgentRequest, { op: 'lane' }>,
  client: ClientStreams,
): Promise<void> {
  const marks = LaneMarks.for(request.env)
  const fast = fastCommand(request.argv, request.env)
  const runner = fast?.command === 'ssh' ? sshOnLane : fast?.command === 'run' ? lanes.run : undefined
  const route = fast && runner ? lanes.routes.take(laneKey({ build: request.build, fast, cwd: request.cwd, env: request.env })) : undefined
  if (!fast || !runner || !route || (fast.command === 'run') !== (route.run !== undefined)) return replyTo(socket, declined('no route'))
  marks?.mark('request to route')
  const claim = join(lanes.dir, request.claim)
  if (!takeClaim(claim)) return replyTo(socket, declined('the client gave up'))
  marks?.mark('claim')
  let began = false
  let opened = () => {}
  const open = new Promise<void>((resolve) => (opened = resolve))
  const begin = () => {
    if (began) return
    began = true
    socket.write(encodeFrame(Frame.started))
    // `run` reads no stdin (neither does its spare worker).
    if (fast.command === 'ssh') socket.write(encodeFrame(Frame.stdinWanted))
    opened()
  }
  const stdout = frameWriter(socket, Frame.stdout, open)
  const stderr = frameWriter(socket, Frame.stderr, open)
  const call = {
    route,
    fast,
    env: request.env,
    exec: (command: string, options: ExecOptions) => {
      marks?.mark('to the exec')
      return pool.exec(route.target, command, options).finally(() => marks?.mark('remote command, to its exit status'))
    },
    stdout,
    stderr,
    stdin: fast.command === 'ssh' ? client.stdin : undefined,
    stop: client.abort.signal,
    again: client.again.signal,
    closed: client.closed,
    begin,
    watch: (root: string, skip: string[]) => lanes.watchers.stamp(root, skip),
  }
  const outcome = await runner(call).catch((error: unknown) => {
    // Before it began nothing ran: the spare worker runs it and reports any failure itself.
    if (!began) return { declined: (error as Error)?.message ?? String(error) }
    // As the CLI prints a failure (without colour: the thin client's stderr is no terminal).
    const failure = asAgentFailure(error)
    stderr.write(failureText(failure))
    return failure.exitCode
  })
  if (typeof outcome !== 'number' && !began) {
    rmSync(claim, { force: true })
    return replyTo(socket, declined(outcome.declined))
  }
  if (marks) stderr.write(marks.text())
  await Promise.all([stdout, stderr].map((w) => new Promise<void>((resolve) => w.end(resolve))))
  replyTo(socket, { ok: true, result: { code: typeof outcome === 'number' ? outcome : 1 } })
}

async function agentStatus(pool: SshPool, about: { socketPath: string; startedAt: Date; idleTimeoutMs: number }) {
  const connections = await pool.list()
  return {
    pid: process.pid,
    socketPath: about.socketPath,
    startedAt: about.startedAt.toISOString(),
    idleTimeoutMs: about.idleTimeoutMs,
    connections: connections.map((c) => ({ target: describeTarget(c.target), port: c.port, busy: c.busy, idleMs: c.idleMs })),
  }
}

/**
 * The per-user connection agent: holds warm SSH connections for the CLI
 * processes of one user, the way OpenSSH ControlPersist would. The socket
 * lives in a 0700 folder and is itself 0600, so only its owner can reach it.
 * Resolves when the agent has shut down (idle, or asked to stop).
 */
export async function runAgent(options: AgentServerOptions): Promise<void> {
  const log = options.log ?? (() => undefined)
  mkdirSync(options.dir, { recursive: true, mode: 0o700 })
  chmodSync(options.dir, 0o700)
  const socketPath = agentSocketPath(options.dir)
  const pidPath = agentPidPath(options.dir)

  if (!claimPidFile(pidPath, log)) return
  rmSync(socketPath, { force: true })

  const pool = new SshPool({ spareChannel: true })
  const spares = new SpareWorkers(options.dir, log)
  const watchers = new Watchers(join(options.dir, 'watch'))
  const lanes = { ...options.lanes, routes: new LaneRoutes(options.dir), dir: options.dir, watchers }
  const sockets = new Set<Socket>()
  const startedAt = new Date()
  let lastActivity = Date.now()
  let stopping = false

  const server = createServer((socket) => {
    sockets.add(socket)
    lastActivity = Date.now()
    socket.on('close', () => {
      sockets.delete(socket)
      lastActivity = Date.now()
    })
    socket.on('error', () => {})
    serve(socket)
  })

  const reply = replyTo

  const serve = (socket: Socket) => {
    let request: AgentRequest | undefined
    const client = new ClientStreams(socket)
    // The CLI went away mid-command (killed, or its terminal closed): hang up the remote side.
    socket.on('close', () => client.hangUp())
    const onFrame = (type: number, payload: Buffer) => {
      if (request) return client.frame(type, payload)
      if (type !== Frame.request) return socket.destroy()
      try {
        request = parseJson(AgentRequest, payload)
      } catch (error) {
        return reply(socket, {
          ok: false,
          error: { message: `bad agent request: ${(error as Error).message}`, exitCode: 1, code: 'error' },
        })
      }
      return handle(socket, request)
    }
    socket.on('data', frameDecoder(onFrame))

    const handle = (socket: Socket, request: AgentRequest) => {
      lastActivity = Date.now()
      switch (request.op) {
        case 'exec':
        case 'connect-exec': {
          const stdin = (client.stdin = request.stdin ? new PassThrough() : undefined)
          void execForClient(pool, socket, request, stdin, client.abort.signal).finally(() => (lastActivity = Date.now()))
          return
        }
        case 'lane':
          client.stdin = new PassThrough()
          spares.laneStarted()
          void laneForClient(pool, lanes, socket, request, client).finally(() => {
            spares.laneEnded()
            lastActivity = Date.now()
          })
          return
        case 'lane-route': {
          const { target, prefix, stamps, run, ...ask } = request
          lanes.routes.record({ key: laneKey(ask), target, prefix, stamps, run })
          return reply(socket, { ok: true })
        }
        case 'connect':
          pool.connection(request.target, { connectTimeoutMs: request.connectTimeoutMs }).then(
            (live) => reply(socket, { ok: true, port: live.port }),
            (error) => reply(socket, toReplyError(error)),
          )
          return
        case 'status':
          void agentStatus(pool, { socketPath, startedAt, idleTimeoutMs: options.idleTimeoutMs }).then((status) =>
            reply(socket, { ok: true, status }),
          )
          return
        case 'watch':
          return void watchers.stamp(request.root, request.skip, request.since).then((watch) => reply(socket, { ok: true, watch }))
        case 'stop':
          reply(socket, { ok: true })
          void shutdown('asked to stop')
          return
      }
    }
  }

  const done = new Promise<void>((resolve) => server.on('close', resolve))
  const shutdown = async (why: string) => {
    if (stopping) return
    stopping = true
    log(`shutting down: ${why}`)
    clearInterval(sweep)
    spares.stop()
    lanes.routes.clear()
    server.close()
    await pool.closeAll().finally(() => watchers.closeAll())
    for (const socket of sockets) socket.destroy()
    rmSync(socketPath, { force: true })
    try {
      if (readFileSync(pidPath, 'utf8').trim() === String(process.pid)) rmSync(pidPath, { force: true })
    } catch {}
  }

  await listenPrivately(server, socketPath)
  log(`listening on ${socketPath} (idle timeout ${options.idleTimeoutMs} ms)`)
  spares.warm()

  const sweep = setInterval(
    async () => {
      // Our folder was removed (a throwaway home, a cleaned runtime dir): nobody can reach us.
      if (!existsSync(socketPath)) return shutdown('socket removed')
      sweepClaims(options.dir)
      const held = await pool.closeIdle(options.idleTimeoutMs)
      if (held === 0 && sockets.size === 0 && Date.now() - lastActivity >= options.idleTimeoutMs) await shutdown('idle')
    },
    Math.max(50, Math.min(options.idleTimeoutMs / 4, 30_000)),
  )
  process.once('SIGTERM', () => void shutdown('SIGTERM'))
  process.once('SIGINT', () => void shutdown('SIGINT'))
  await done
}
