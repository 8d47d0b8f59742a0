import { existsSync, fstatSync, lstatSync, readdirSync, rmSync, statSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { isatty } from 'node:tty'
import { fileURLToPath } from 'node:url'
import { type FastCommand, truthy } from './fast-argv.js'
import { runtimeDir } from './paths.js'
import { startUpLine } from './start-marks.js'
import { buildStamp, createExclusive, encodeFrame, Frame, frameDecoder } from './transport/ssh/agent-frames.js'
import { laneMarkerName, sparesInTurn } from './transport/ssh/agent-folder.js'

export { fastCommand } from './fast-argv.js'

/**
 * The thin client: the first stop of a hot command (`ssh --id X -- cmd`, `run --id X … -- cmd`)
 * when this user's connection agent is up. Instead of loading the fast path (one 400 KiB file,
 * its modules' top level, the config loader) it hands argv, cwd and environment to one of the
 * agent's spare workers (src/warm-worker.ts), which has all of that loaded and runs the command
 * as this process would; stdout, stderr, stdin, signals and the exit code travel as frames.
 * Anything unusual (no agent or no spare, a folder not ours, a terminal, Node start-up options,
 * a worker that does not answer within a second, one of another build) answers false before
 * anything ran, and bin/run.js runs the fast path as before, which also starts the agent.
 * `CRABBOX_NO_THIN_CLIENT=1` turns it off.
 */

/** A live spare worker answers at once: one that does not is wedged, and the fast path runs instead. */
const START_MS = 1000
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

/** `CRABBOX_TRACE_START=1`: the thin client's phases, in the fast path's format (the worker adds its own). */
const tracing = truthy(process.env.CRABBOX_TRACE_START)
let lastMark = 0
function mark(phase: string): void {
  if (!tracing) return
  const now = performance.now()
  // Once, in wall-clock time: the bench adds what no mark can see, from its spawn to Node's time origin.
  if (lastMark === 0) process.stderr.write(`start-up: thin client: time origin ${performance.timeOrigin.toFixed(1)} (Unix epoch)\n`)
  process.stderr.write(startUpLine(`thin client: ${phase}`, now - lastMark, now))
  lastMark = now
}

/** Runs `fast` in the agent's spare worker: true when it ran there (process.exitCode is set), false to fall back. */
export async function thinRun(fast: FastCommand, argv: string[]): Promise<boolean> {
  if (!usable(fast)) return false
  mark('node and bin/run.js')
  const build = buildStamp(fileURLToPath(new URL('./fast-path.js', import.meta.url)), process.env)
  const dir = runtimeDir()
  if (!build || !privateDir(dir)) return false
  const env = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined))
  const job = { build, argv, bin: process.argv[1] ?? '', cwd: process.cwd(), env }
  // `ssh` and `run`: the agent itself, when a spare worker filed a route for this command (agent-lane.ts):
  // asked only while the agent holds one for this command (its marker), or a broker lease would pay for a decline.
  const lane =
    !fast.flags['timing-json'] && !truthy(process.env.CRABBOX_NO_AGENT_LANE) && existsSync(join(dir, laneMarkerName(fast.command)))
  const agent = lane ? await reach(join(dir, 'agent.sock')) : undefined
  if (agent && (await converse(agent, { op: 'lane', ...job, claim: newClaim() }, dir, LANE))) return true
  // A run that syncs wants the spare that read ahead (the oldest); anything else leaves it be.
  const socket = await reachSpare(dir, fast.command === 'run' && fast.flags['no-sync'] !== true)
  if (!socket) return false
  mark('worker reached')
  return converse(socket, { ...job, claim: newClaim() }, dir, WORKER)
}

/**
 * A claim's name: whoever creates this file first has the command, the worker (or the agent)
 * before it runs it, this client before it gives up waiting and runs it itself (src/warm-worker.ts).
 */
const newClaim = () => `claim-${process.pid.toString(16)}-${Math.floor(Math.random() * 2 ** 32).toString(16)}`

/** Creates the claim file: false when the worker was first (it has the command and runs it). */
function claimFirst(path: string): boolean {
  // Any other failure falls back too: the worker has not answered, and without its `started` nothing ran.
  return createExclusive(path) !== 'taken'
}

/** The first spare worker that takes the connection (`spare-<n>.sock` in the agent's folder), oldest or newest first. */
async function reachSpare(dir: string, oldestFirst: boolean): Promise<Socket | undefined> {
  let names: string[]
  try {
    names = sparesInTurn(readdirSync(dir), oldestFirst)
  } catch {
    return undefined
  }
  for (const name of names) {
    const socket = await reach(join(dir, name))
    if (socket) return socket
  }
  return undefined
}

function usable(fast: FastCommand): boolean {
  const env = process.env
  if (truthy(env.CRABBOX_NO_THIN_CLIENT) || truthy(env.CRABBOX_NO_AGENT)) return false
  // Node options on the command line (NODE_OPTIONS and NODE_EXTRA_CA_CERTS are part of the build stamp).
  if (process.execArgv.length > 0) return false
  // A terminal (raw mode, window size, a pty) stays with the process that owns it.
  return fast.words.length > 0 && ![0, 1, 2].some((fd) => isatty(fd))
}

/** The agent's folder: ours and closed to others (the fast path tightens or refuses anything else). */
function privateDir(dir: string): boolean {
  try {
    const stat = lstatSync(dir)
    return stat.isDirectory() && stat.uid === process.getuid?.() && (stat.mode & 0o077) === 0
  } catch {
    return false
  }
}

function reach(path: string): Promise<Socket | undefined> {
  // sun_path holds 108 bytes on Linux (104 on macOS).
  if (Buffer.byteLength(path) > 103) return Promise.resolve(undefined)
  return new Promise((resolve) => {
    const socket = connect(path)
    socket.once('connect', () => resolve(socket))
    socket.once('error', () => {
      socket.destroy()
      resolve(undefined)
    })
  })
}

/** The trace's words for who took the command, or declined it. */
interface Marks {
  started: string
  declined: string
}
const WORKER: Marks = { started: 'worker started', declined: 'falls back to the fast path' }
const LANE: Marks = { started: 'agent lane started', declined: 'agent lane declined' }

/**
 * The conversation with a spare worker, or the agent's lane: resolves false (fall back) only
 * before `started`. `request.claim` names the claim file in `dir`.
 */
function converse(socket: Socket, request: Record<string, unknown> & { claim: string }, dir: string, marks: Marks): Promise<boolean> {
  const claim = join(dir, request.claim)
  return new Promise((resolve) => {
    let started = false
    let ended = false
    let detach = () => {}
    let fellBack = false
    const fallBack = () => {
      if (fellBack) return
      fellBack = true
      mark(marks.declined)
      clearTimeout(timer)
      socket.destroy()
      resolve(false)
    }
    // Give up only when the worker has not taken the command; when it has, its `started` is on the way.
    const timer = setTimeout(() => claimFirst(claim) && fallBack(), START_MS)
    const end = (code: number) => {
      mark('exit code')
      ended = true
      rmSync(claim, { force: true })
      process.exitCode = code
      detach()
      socket.destroy()
      resolve(true)
    }
    socket.on('error', () => {})
    socket.on(
      'data',
      frameDecoder((type, payload) => {
        if (type === Frame.started) {
          if (fellBack) return // too late: the fast path runs it (the worker lost the claim and does not)
          mark(marks.started)
          clearTimeout(timer)
          started = true
          detach = attach(socket)
        } else if (type === Frame.result) {
          if (!started) return fallBack() // declined: another build, or it was taken
          const reply = JSON.parse(payload.toString('utf8')) as { result?: { code?: number } }
          end(reply.result?.code ?? 1)
        } else if (type === Frame.stdout || type === Frame.stderr) output(socket, type, payload)
        else if (type === Frame.stdinWanted) forwardStdin(socket)
      }),
    )
    socket.on('close', () => {
      if (!started) return fallBack()
      if (ended) return
      // The worker ended without an exit code: killed by a signal we forwarded, or it crashed.
      const signal = lastSignal
      detach()
      rmSync(claim, { force: true })
      if (signal) return void process.kill(process.pid, signal)
      outputStream('stderr', socket).write("crabbox: the command ended without an exit code (the agent's worker exited)\n")
      end(1)
    })
    socket.write(encodeFrame(Frame.request, request))
  })
}

let lastSignal: NodeJS.Signals | undefined
type OutputName = 'stdout' | 'stderr'
const closedOutput = { stdout: false, stderr: false }

/**
 * Our stdout or stderr, made on first use: Node builds process.stdout and process.stderr when
 * first asked for (up to ≈ 2 ms each here for a pipe), and a command that prints nothing needs
 * neither. From then on a closed one (EPIPE) is reported to the worker on `socket`.
 */
function outputStream(name: OutputName, socket: Socket): NodeJS.WriteStream {
  const stream = process[name]
  if (touched.has(name)) return stream
  touched.add(name)
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE' || closedOutput[name]) return
    closedOutput[name] = true
    socket.write(encodeFrame(Frame.outputClosed, name))
    // No 'drain' comes from a closed stream: stop waiting for one.
    if (waiting.delete(stream)) socket.resume()
  })
  return stream
}
const touched = new Set<OutputName>()

/** Calls `done` once every stream this client wrote to has taken everything (a slow reader leaves writes queued, even on a pipe). */
export function flushOutput(done: () => void): void {
  let pending = touched.size + 1
  const flushed = () => --pending === 0 && done()
  for (const name of touched) process[name].write('', flushed)
  flushed()
}

/** From `started` on: signals go to the worker. */
function attach(socket: Socket): () => void {
  const onSignal = (name: NodeJS.Signals) => {
    lastSignal = name
    socket.write(encodeFrame(Frame.signal, { name }))
  }
  for (const name of SIGNALS) process.on(name, onSignal)
  return () => {
    for (const name of SIGNALS) process.off(name, onSignal)
    // A closed pipe can still fail a late write: the handlers stay quiet instead of crashing.
    stdinForwarded?.destroy()
  }
}

/** The worker's output, with backpressure: a slow reader pauses the socket, then the worker, then the command. */
function output(socket: Socket, type: number, payload: Buffer): void {
  const name = type === Frame.stdout ? 'stdout' : 'stderr'
  const stream = outputStream(name, socket)
  if (closedOutput[name] || stream.destroyed) return
  if (stream.write(payload) || waiting.has(stream)) return
  waiting.add(stream)
  socket.pause()
  stream.once('drain', () => {
    waiting.delete(stream)
    socket.resume()
  })
}
const waiting = new Set<NodeJS.WriteStream>()

let stdinForwarded: NodeJS.ReadStream | undefined
let stdinEnded = false

/** The command reads stdin: ours goes to the worker as frames from now on (never read before). */
function forwardStdin(socket: Socket): void {
  if (stdinForwarded || stdinEnded) return
  // Nothing to read from /dev/null (a caller's `stdin: 'ignore'`), and reading it would start
  // libuv's thread pool, whose four threads the exit then waits for (≈ 3 ms of every command).
  if (isDevNull(0)) {
    stdinEnded = true
    return void socket.write(encodeFrame(Frame.stdinEnd))
  }
  const stdin = (stdinForwarded = process.stdin)
  stdin.on('data', (chunk: Buffer) => {
    if (socket.write(encodeFrame(Frame.stdin, chunk))) return
    stdin.pause()
    socket.once('drain', () => stdin.resume())
  })
  stdin.once('end', () => socket.write(encodeFrame(Frame.stdinEnd)))
  stdin.once('error', () => socket.write(encodeFrame(Frame.stdinError)))
}

function isDevNull(fd: number): boolean {
  try {
    const stat = fstatSync(fd)
    return stat.isCharacterDevice() && stat.rdev === statSync('/dev/null').rdev
  } catch {
    return false
  }
}
