import { rmSync } from 'node:fs'
import { access } from 'node:fs/promises'
import { createServer, type Socket } from 'node:net'
import { dirname, join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { heldWork } from './exit-hold.js'
import { type FastCommand, fastCommand } from './fast-argv.js'
import { CLAIM_NAME, encodeFrame, Frame, frameDecoder, takeClaim } from './transport/ssh/agent-frames.js'
import { claimClientGone } from './transport/ssh/claim-sweep.js'
import { listenPrivately } from './transport/ssh/private-socket.js'

/**
 * The connection agent's spare worker: a Node process the agent starts ahead of time
 * (src/transport/ssh/agent-spare.ts) with the fast path's modules already loaded, listening on
 * its own socket in the agent's 0700 folder. One thin client (src/thin-client.ts) sends it a
 * command's argv, cwd and environment; the worker becomes that command's process (same env,
 * cwd, argv, exit code, signals) with its stdout, stderr and stdin carried as frames over the
 * socket, runs the fast path (`runFast`) once and exits. One command per worker, so nothing of
 * one command (config, lease records, signal handlers) can leak into the next.
 */

/** The thin client's request. */
export interface WarmJob {
  build: string
  argv: string[]
  bin: string
  cwd: string
  env: Record<string, string>
  /**
   * A file name in the agent's folder that the worker creates (`O_EXCL`) before it runs the
   * command, and a client that gave up waiting before it falls back: whoever creates it first
   * has the command, so it runs once. Required: a request without one is declined as a bad
   * request before anything runs (the client falls back).
   */
  claim: string
}

const isJob = (job: Partial<WarmJob> | undefined): job is WarmJob =>
  typeof job?.build === 'string' &&
  Array.isArray(job.argv) &&
  job.argv.every((word) => typeof word === 'string') &&
  typeof job.bin === 'string' &&
  typeof job.cwd === 'string' &&
  typeof job.env === 'object' &&
  job.env !== null &&
  typeof job.claim === 'string' &&
  CLAIM_NAME.test(job.claim)

/**
 * Loads every module a hot command needs (`preload`), listens on `socketPath`, says `ready` to
 * the agent and waits for one client of the same `build`; a client of another build is declined.
 * `ahead` starts what needs only the command's cwd and environment (reading its config: no side
 * effects) before the streams are bound; `run` then takes what it started. `idle` is work for the
 * time between `ready` and a client (reading ahead), stopped when a client is taken.
 */
export function serveWarm<Ahead>(
  run: (fast: FastCommand, warmAt: number, ahead: Ahead) => Promise<void>,
  preload: () => Promise<unknown>,
  socketPath: string,
  build: string,
  ahead: (fast: FastCommand) => Ahead,
  idle?: { start(): void; stop(): void },
): void {
  let taken = false
  const server = createServer((socket) => {
    socket.on('error', () => {})
    if (taken) return void socket.destroy()
    const decoder = frameDecoder((type, payload) => {
      socket.off('data', decoder)
      let job: WarmJob | undefined
      try {
        job = JSON.parse(payload.toString('utf8')) as WarmJob
      } catch {}
      if (type !== Frame.request || !isJob(job)) return decline(socket, 'bad request')
      if (taken) return decline(socket, 'taken')
      // A client of another build: this worker's is likely stale (crabbox rebuilt); the agent starts a new one.
      if (job.build !== build) {
        taken = true
        decline(socket, 'another build')
        return void socket.once('close', () => process.exit(0))
      }
      taken = true
      const at = performance.now()
      idle?.stop()
      server.close()
      rmSync(socketPath, { force: true })
      process.disconnect?.() // from here on this process is the client's command, not the agent's child
      runJob(job, socket, dirname(socketPath), ahead, (fast, early) => run(fast, at, early))
    })
    socket.on('data', decoder)
  })
  // The agent went away before a client came: nobody can use this worker.
  process.on('disconnect', () => {
    if (taken) return
    rmSync(socketPath, { force: true })
    process.exit(0)
  })
  preload()
    // libuv starts its thread pool on the first call that needs it (any fs/promises call, a DNS
    // lookup): ≈ 3-10 ms of starting threads that would otherwise land inside the first command.
    .then(() => access(dirname(socketPath)).catch(() => {}))
    .then(() => listenPrivately(server, socketPath))
    .then(
      () => (process.send?.('ready'), taken || idle?.start()),
      () => process.exit(1),
    )
}

function decline(socket: Socket, why: string): void {
  socket.end(encodeFrame(Frame.result, { ok: false, error: { message: why, exitCode: 1, code: 'declined' } }))
}

function runJob<Ahead>(
  job: WarmJob,
  socket: Socket,
  dir: string,
  ahead: (fast: FastCommand) => Ahead,
  run: (fast: FastCommand, early: Ahead) => Promise<void>,
): void {
  const fast = fastCommand(job.argv, job.env)
  if (!fast) return decline(socket, 'not a hot command')
  try {
    process.chdir(job.cwd)
  } catch {
    return decline(socket, 'no such working folder')
  }
  // Nobody waits for it (and the agent may have swept its claim): never run, let alone twice.
  if (claimClientGone(job.claim)) return decline(socket, 'the client is gone')
  // The command is ours only if the client has not claimed it for its own fallback.
  if (!takeClaim(join(dir, job.claim))) return decline(socket, 'the client gave up')
  // `started` as soon as nothing can decline any more; the claim is ours, so the command runs at
  // once: a client that gives up waiting from now on finds the claim taken and keeps waiting.
  socket.write(encodeFrame(Frame.started))
  for (const key of Object.keys(process.env)) delete process.env[key]
  Object.assign(process.env, job.env)
  process.argv = [process.execPath, job.bin, ...job.argv]
  const early = ahead(fast)
  bindToClient(socket)
  void run(fast, early)
}

/** How long a finished command waits for its client to close (it does at once when it reads the exit code). */
const CLIENT_CLOSE_MS = 10_000

const brokenPipe = () => Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' })

/**
 * Makes `socket` this process's stdout, stderr and stdin (as a pipe would be: no TTY), a
 * signal frame a real signal to this process, and the exit an exit code frame to the client.
 */
function bindToClient(socket: Socket): void {
  const closed: Record<string, boolean> = { stdout: false, stderr: false }
  const output = (type: number, name: string) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        if (closed[name]) return done(brokenPipe())
        if (socket.destroyed || socket.write(encodeFrame(type, chunk))) return done()
        const go = () => {
          socket.off('drain', go)
          socket.off('close', go)
          done()
        }
        socket.on('drain', go)
        socket.on('close', go)
      },
    })
  const stdout = output(Frame.stdout, 'stdout')
  const stderr = output(Frame.stderr, 'stderr')
  let asked = false
  const stdin = new Readable({
    read() {
      if (!asked && !socket.destroyed) socket.write(encodeFrame(Frame.stdinWanted))
      asked = true
      socket.resume()
    },
  })
  for (const [name, stream] of [
    ['stdout', stdout],
    ['stderr', stderr],
    ['stdin', stdin],
  ] as const) {
    Object.defineProperty(process, name, { configurable: true, enumerable: true, get: () => stream })
  }

  let finished = false
  const exitNow = process.exit.bind(process)
  // The command's held work (src/exit-hold.ts) ends before the process does, after the exit code went out.
  const realExit = (code: number) => void heldWork().then(() => exitNow(code))
  const finish = (code: number) => {
    if (finished) return
    finished = true
    // Output still queued behind a full socket goes out before the exit code.
    const flush = () => {
      if (!socket.destroyed && stdout.writableLength + stderr.writableLength > 0) return void setTimeout(flush, 2)
      if (socket.destroyed) return realExit(code)
      // Stay until the client has read the exit code and closed its end. Exiting at once (the
      // socket is unref'd) closed it under a frame the client was still writing (the end of
      // its stdin, say): the failed write destroyed the client's socket before it read the
      // exit code ("the command ended without an exit code"). Frames from now on are dropped.
      socket.ref()
      socket.resume()
      socket.once('close', () => realExit(code))
      setTimeout(() => realExit(code), CLIENT_CLOSE_MS).unref()
      socket.end(encodeFrame(Frame.result, { ok: true, result: { code } }))
    }
    flush()
  }
  process.exit = ((code?: number | string | null) => finish(Number(code ?? process.exitCode ?? 0))) as typeof process.exit
  process.on('beforeExit', () => finish(Number(process.exitCode ?? 0)))
  process.on('uncaughtException', (error) => {
    stderr.write(`${(error as Error)?.stack ?? String(error)}\n`)
    finish(1)
  })

  socket.on(
    'data',
    frameDecoder((type, payload) => {
      if (finished) return
      if (type === Frame.stdin) {
        if (!stdin.push(payload)) socket.pause()
      } else if (type === Frame.stdinEnd) stdin.push(null)
      else if (type === Frame.stdinError) stdin.destroy(new Error('reading stdin failed'))
      else if (type === Frame.signal) process.kill(process.pid, (JSON.parse(payload.toString('utf8')) as { name: string }).name)
      else if (type === Frame.outputClosed) closed[payload.toString('utf8')] = true
    }),
  )
  socket.on('error', () => {})
  // The client went away (killed, its terminal closed): as if our terminal hung up.
  socket.on('close', () => {
    if (!finished) process.kill(process.pid, 'SIGHUP')
  })
  // The socket alone does not keep this process alive: it ends when the command's work does.
  socket.unref()
}
