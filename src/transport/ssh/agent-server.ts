import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { CrabboxError } from '../../errors.js'
import { AgentRequest, AgentSignal, type AgentReply, encodeFrame, Frame, frameDecoder, parseJson } from './agent-protocol.js'
import { SpareWorkers } from './agent-spare.js'
import { listenPrivately } from './private-socket.js'
import { Watchers } from './agent-watch.js'
import { SshPool } from './pool.js'
import { afterDrain, writeOrPause } from './streams.js'
import type { SshTarget } from './types.js'

export interface AgentServerOptions {
  /** The 0700 folder holding `agent.sock` and `agent.pid`. */
  dir: string
  idleTimeoutMs: number
  log?: (line: string) => void
}

const agentSocketPath = (dir: string) => join(dir, 'agent.sock')
const agentPidPath = (dir: string) => join(dir, 'agent.pid')

const describeTarget = (t: SshTarget) => `${t.user}@${t.host}:${t.port}`

function toReplyError(error: unknown): AgentReply {
  if (error instanceof CrabboxError) {
    return { ok: false, error: { message: error.message, exitCode: error.exitCode, code: error.code, hint: error.hint } }
  }
  return { ok: false, error: { message: (error as Error)?.message ?? String(error), exitCode: 7, code: 'ssh' } }
}

/** Whether `pid` is a running agent; a pid reused by another program does not count. */
function agentAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('agent-main')
  } catch {
    return true // no /proc here (macOS): trust the signal check
  }
}

/**
 * Output frames with backpressure: while the CLI does not read its socket, the
 * writer does not complete, the SSH channel piped into it pauses, and the
 * remote command blocks instead of the agent buffering without bound.
 */
function frameWriter(socket: Socket, type: number): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (socket.destroyed) return done()
      if (socket.write(encodeFrame(type, chunk))) return done()
      afterDrain(socket, () => done())
    },
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
    let stdin: PassThrough | undefined
    const abort = new AbortController()
    socket.on('close', () => {
      // The CLI went away mid-command (killed, or its terminal closed): hang up the remote side.
      if (!abort.signal.aborted) abort.abort('SIGHUP')
      stdin?.destroy()
    })
    const onFrame = (type: number, payload: Buffer) => {
      if (!request) {
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
      if (type === Frame.stdin) {
        // Backpressure: stop reading the CLI until the SSH channel drains.
        if (stdin) writeOrPause(stdin, payload, socket)
      } else if (type === Frame.stdinEnd) {
        stdin?.end()
      } else if (type === Frame.signal) {
        if (!abort.signal.aborted) abort.abort(parseJson(AgentSignal, payload).name)
      }
    }
    socket.on('data', frameDecoder(onFrame))

    const handle = (socket: Socket, request: AgentRequest) => {
      lastActivity = Date.now()
      switch (request.op) {
        case 'exec':
        case 'connect-exec': {
          stdin = request.stdin ? new PassThrough() : undefined
          void execForClient(pool, socket, request, stdin, abort.signal).finally(() => (lastActivity = Date.now()))
          return
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
      const held = await pool.closeIdle(options.idleTimeoutMs)
      if (held === 0 && sockets.size === 0 && Date.now() - lastActivity >= options.idleTimeoutMs) await shutdown('idle')
    },
    Math.max(50, Math.min(options.idleTimeoutMs / 4, 30_000)),
  )
  process.once('SIGTERM', () => void shutdown('SIGTERM'))
  process.once('SIGINT', () => void shutdown('SIGINT'))
  await done
}
