import { spawn } from 'node:child_process'
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync } from 'node:fs'
import { connect as connectSocket, type Socket } from 'node:net'
import { join } from 'node:path'
import { Readable, type Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { runtimeDir } from '../../paths.js'
import { CrabboxError } from '../../errors.js'
import {
  AgentConnected,
  AgentReply,
  type AgentRequest,
  type AgentStatus,
  encodeFrame,
  Frame,
  frameDecoder,
  parseJson,
} from './agent-protocol.js'
import { abortSignalName, lostTransport } from './exec.js'
import { writeOrPause } from './streams.js'
import type { ExecOptions, ExecResult, SshTarget } from './types.js'

/** Where this user's agent listens: `<runtime dir>/agent.sock` in a 0700 folder. */
const agentDir = () => runtimeDir()
export const agentSocket = () => join(agentDir(), 'agent.sock')

export const agentDisabled = () => ['1', 'true', 'yes'].includes((process.env.CRABBOX_NO_AGENT ?? '').toLowerCase())

/**
 * Whether the agent folder can be trusted: missing (we create it 0700), or a
 * directory of ours. Another user's folder could hold a socket that poses as
 * the agent and reads our commands and keys' targets; a folder of ours with
 * loose permissions is tightened first.
 */
function privateAgentDir(): boolean {
  let stat
  try {
    stat = lstatSync(agentDir())
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT'
  }
  if (!stat.isDirectory() || (process.getuid !== undefined && stat.uid !== process.getuid())) return false
  if ((stat.mode & 0o077) === 0) return true
  try {
    chmodSync(agentDir(), 0o700)
    return true
  } catch {
    return false
  }
}

function tryConnect(path: string): Promise<Socket | undefined> {
  if (!privateAgentDir()) return Promise.resolve(undefined)
  return new Promise((resolve) => {
    const socket = connectSocket(path)
    socket.once('connect', () => {
      socket.removeAllListeners('error')
      socket.on('error', () => {})
      resolve(socket)
    })
    socket.once('error', () => {
      socket.destroy()
      resolve(undefined)
    })
  })
}

const agentScript = () => fileURLToPath(new URL('../../agent-main.js', import.meta.url))

/** Starts the agent as a detached process that outlives this CLI; its log is agent.log. */
function spawnAgent(idleTimeoutMs: number): boolean {
  const script = agentScript()
  if (!existsSync(script)) return false
  const dir = agentDir()
  const env = { ...process.env }
  // The agent never speaks HTTPS; this only slows its start. Its spare workers may: they get it back.
  if (env.NODE_EXTRA_CA_CERTS) env.CRABBOX_AGENT_EXTRA_CA_CERTS = env.NODE_EXTRA_CA_CERTS
  delete env.NODE_EXTRA_CA_CERTS
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const log = openSync(join(dir, 'agent.log'), 'a', 0o600)
    try {
      const child = spawn(process.execPath, [script, dir, String(idleTimeoutMs)], { detached: true, stdio: ['ignore', log, log], env })
      child.on('error', () => {})
      child.unref()
    } finally {
      closeSync(log)
    }
    return true
  } catch {
    return false // an unusable runtime folder: the caller connects in-process instead
  }
}

// sun_path holds 108 bytes on Linux (104 on macOS); a longer path cannot be listened on.
const MAX_SOCKET_PATH = 103

/**
 * A socket to the running agent, starting one if needed; undefined when it
 * cannot start. The idle timeout is only worked out when an agent is started.
 */
export async function reachAgent(options: { idleTimeoutMs: () => Promise<number>; start?: boolean }): Promise<Socket | undefined> {
  const path = agentSocket()
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) return undefined
  const first = await tryConnect(path)
  if (first || options.start === false) return first
  if (!privateAgentDir() || !spawnAgent(await options.idleTimeoutMs())) return undefined
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10))
    const socket = await tryConnect(path)
    if (socket) return socket
  }
  return undefined
}

const fromReply = (reply: Extract<AgentReply, { ok: false }>) =>
  new CrabboxError(reply.error.message, { exit: reply.error.exitCode, code: reply.error.code, hint: reply.error.hint })

interface OutputHandlers {
  onStdout?: (chunk: Buffer) => void
  onStderr?: (chunk: Buffer) => void
  /** Writables get the output with backpressure: a slow reader stops this socket, then the agent, then the channel. */
  stdout?: Writable
  stderr?: Writable
}

/**
 * Sends one request on `socket` and resolves with the agent's reply; streams
 * stdout/stderr frames. `timeoutMs` bounds requests that must answer (not execs).
 */
function converse(
  socket: Socket,
  request: AgentRequest,
  handlers: OutputHandlers & { onLost: () => Error; timeoutMs?: number; onConnected?: (port: number) => void },
): Promise<AgentReply> {
  const output = (payload: Buffer, writable?: Writable, callback?: (chunk: Buffer) => void) =>
    writable ? writeOrPause(writable, payload, socket) : callback?.(payload)
  return new Promise((resolve, reject) => {
    let replied = false
    let timedOut = false
    const timer = handlers.timeoutMs === undefined ? undefined : setTimeout(() => ((timedOut = true), socket.destroy()), handlers.timeoutMs)
    socket.on(
      'data',
      frameDecoder((type, payload) => {
        if (type === Frame.stdout) output(payload, handlers.stdout, handlers.onStdout)
        else if (type === Frame.stderr) output(payload, handlers.stderr, handlers.onStderr)
        else if (type === Frame.connected) {
          // The time limit covers reaching the host, not the command.
          clearTimeout(timer)
          handlers.onConnected?.(parseJson(AgentConnected, payload).port)
        } else if (type === Frame.result) {
          replied = true
          clearTimeout(timer)
          try {
            resolve(parseJson(AgentReply, payload))
          } catch (error) {
            reject(error)
          }
        }
      }),
    )
    socket.on('close', () => {
      clearTimeout(timer)
      if (!replied) reject(timedOut ? new AgentUnresponsive() : handlers.onLost())
    })
    socket.write(encodeFrame(Frame.request, request))
  })
}

/** The agent went away without answering (it was exiting, or crashed). */
export class AgentLost extends CrabboxError {
  constructor() {
    super('the crabbox agent closed the connection without answering', { exit: 'error', hint: `See ${join(agentDir(), 'agent.log')}.` })
  }
}

/** The agent took the request but never answered: it is wedged. */
export class AgentUnresponsive extends CrabboxError {
  constructor() {
    super('the crabbox agent did not answer', {
      exit: 'error',
      hint: `Stop it (its pid is in ${join(agentDir(), 'agent.pid')}); the next command starts a new one.`,
    })
  }
}

/** How long status and stop may take. */
const CONTROL_TIMEOUT_MS = 5000

/** A control request (status, stop, connect) to a running agent; connect passes its own time limit. */
export async function agentRequest(
  socket: Socket,
  request: AgentRequest,
  timeoutMs = CONTROL_TIMEOUT_MS,
): Promise<AgentReply & { ok: true }> {
  const reply = await converse(socket, request, { onLost: () => new AgentLost(), timeoutMs })
  if (!reply.ok) throw fromReply(reply)
  return reply
}

/** An agent started by an older crabbox: it does not know `connect-exec` (nothing ran). */
export class AgentOutdated extends CrabboxError {
  constructor() {
    super('the crabbox agent does not know connect-exec', { exit: 'error' })
  }
}

/**
 * `agentExec`'s connect step, for a `connect-exec` request: the agent connects (from its pool
 * when it holds the connection) and answers `connected` before the command runs, so a warm
 * command costs one request to the agent instead of a `connect` and an `exec`.
 */
export interface ConnectFirst {
  connectTimeoutMs?: number
  /** How long the connect step may take before the agent counts as wedged (AgentUnresponsive). */
  limitMs: number
  onConnected?: (port: number) => void
}

/**
 * Runs one command through the agent: stdin is forwarded with backpressure
 * (the agent stops reading while the SSH window is full), aborting sends the
 * signal on, and an agent that dies mid-command is a lost transport (255).
 * With `connect`, the same request connects first: until the agent answers
 * `connected` nothing ran, so losing the agent is AgentLost (try again), a
 * connection error is the agent's reply (as for `connect`), an interrupt just
 * drops the request, and stdin is not read yet (a retry still has all of it).
 */
export async function agentExec(
  socket: Socket,
  target: SshTarget,
  command: string,
  options: ExecOptions = {},
  connect?: ConnectFirst,
): Promise<ExecResult> {
  // Interrupted while we reached the agent: nothing was sent, nothing runs.
  if (options.signal?.aborted) {
    socket.destroy()
    return { code: null, signal: abortSignalName(options.signal) }
  }
  const stdin = options.stdin
  let connected = connect === undefined
  let interrupted = false
  const onAbort = () => {
    if (connected) return void socket.write(encodeFrame(Frame.signal, { name: abortSignalName(options.signal) }))
    interrupted = true
    socket.destroy()
  }
  options.signal?.addEventListener('abort', onAbort, { once: true })
  let forwardStdin = () => {}
  const fields = { target, command, cwd: options.cwd, env: options.env, stdin: stdin !== undefined }
  const conversation = converse(
    socket,
    connect ? { op: 'connect-exec', connectTimeoutMs: connect.connectTimeoutMs, ...fields } : { op: 'exec', ...fields },
    {
      onStdout: options.onStdout,
      onStderr: options.onStderr,
      stdout: options.stdout,
      stderr: options.stderr,
      timeoutMs: connect?.limitMs,
      onConnected: (port) => {
        connected = true
        connect?.onConnected?.(port)
        forwardStdin()
      },
      onLost: () => (connected ? lostTransport(`${target.host} (the crabbox agent exited)`) : new AgentLost()),
    },
  )
  if (connected) sendStdin()
  else forwardStdin = sendStdin
  try {
    const reply = await conversation
    if (!reply.ok && !connected && reply.error.message.startsWith('bad agent request')) throw new AgentOutdated()
    if (!reply.ok) throw fromReply(reply)
    return reply.result ?? { code: null }
  } catch (error) {
    if (interrupted) return { code: null, signal: abortSignalName(options.signal) }
    throw error
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    socket.destroy()
  }

  function sendStdin() {
    forwardStdinFrames(socket, stdin, conversation)
  }
}

/** Sends `stdin` to the agent as frames (a Readable with backpressure), until `conversation` settles. */
function forwardStdinFrames(socket: Socket, stdin: ExecOptions['stdin'], conversation: Promise<unknown>): void {
  if (stdin instanceof Readable) {
    const onData = (chunk: Buffer | string) => writeOrPause(socket, encodeFrame(Frame.stdin, Buffer.from(chunk)), stdin)
    const onEnd = () => socket.write(encodeFrame(Frame.stdinEnd))
    // A failed stdin must not look complete to the remote command: drop the exec (exit 255) instead.
    const onError = () => socket.destroy()
    stdin.on('data', onData)
    stdin.once('end', onEnd)
    stdin.once('error', onError)
    if (stdin.readableEnded) onEnd()
    conversation
      .finally(() => {
        stdin.off('data', onData)
        stdin.off('end', onEnd)
        stdin.off('error', onError)
      })
      .catch(() => {})
  } else if (stdin !== undefined) {
    socket.write(encodeFrame(Frame.stdin, Buffer.from(stdin)))
    socket.write(encodeFrame(Frame.stdinEnd))
  }
}

export async function agentStatus(): Promise<AgentStatus | undefined> {
  const socket = await tryConnect(agentSocket())
  if (!socket) return undefined
  return (await agentRequest(socket, { op: 'status' })).status
}

/** Asks the agent to close its connections and exit; false when none was running. */
export async function agentStop(): Promise<boolean> {
  const socket = await tryConnect(agentSocket())
  if (!socket) return false
  await agentRequest(socket, { op: 'stop' })
  return true
}

/**
 * The running agent's watcher stamp for `root`, leaving out the folders in `skip` (agent-watch.ts),
 * with the paths moved since the stamp `since` when the watcher can name them all;
 * undefined when no agent runs (none is started for this), it is of an older
 * crabbox, or its watcher cannot vouch for the checkout.
 */
export async function agentWatchStamp(
  root: string,
  skip: string[],
  since?: { id: string; seq: number },
): Promise<{ id: string; seq: number; paths?: string[] } | undefined> {
  if (agentDisabled() || Buffer.byteLength(agentSocket()) > MAX_SOCKET_PATH) return undefined
  const socket = await tryConnect(agentSocket())
  if (!socket) return undefined
  try {
    return (await agentRequest(socket, { op: 'watch', root, skip, since }, WATCH_TIMEOUT_MS)).watch
  } catch {
    return undefined
  } finally {
    socket.destroy()
  }
}

/** A stamp needs the agent's event queue drained (at most 1 s there): past this, git decides. */
const WATCH_TIMEOUT_MS = 1500

/**
 * Files a route for the agent lane (agent-lane.ts) with the running agent; an agent that is not
 * there, or of an older crabbox (it answers `bad agent request`), keeps none, and nothing else changes.
 */
export async function agentFileRoute(route: Extract<AgentRequest, { op: 'lane-route' }>): Promise<void> {
  if (agentDisabled() || Buffer.byteLength(agentSocket()) > MAX_SOCKET_PATH) return
  const socket = await tryConnect(agentSocket())
  if (!socket) return
  try {
    await agentRequest(socket, route)
  } catch {
    // Only a cache: the command it came from has already run its course.
  } finally {
    socket.destroy()
  }
}
