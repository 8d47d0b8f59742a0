import { constants } from 'node:os'
import { Readable } from 'node:stream'
import type { Client, ClientChannel } from 'ssh2'
import { CrabboxError } from '../../errors.js'
import type { ExecOptions, ExecResult, ShellOptions, ShellSession } from './types.js'

/** POSIX single-quote: the one quoting rule every remote `sh` understands. */
export const shellQuote = (value: string) => (/^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`)

/**
 * cwd and env become a shell prefix rather than SSH `env` requests, which
 * sshd silently drops unless AcceptEnv lists each name.
 */
function remoteCommand(command: string, options: Pick<ExecOptions, 'cwd' | 'env'> = {}): string {
  const env = Object.entries(options.env ?? {})
  const bad = env.find(([name]) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
  if (bad)
    throw new CrabboxError(`invalid environment variable name ${JSON.stringify(bad[0])}`, {
      exit: 'usage',
      hint: 'Names may contain letters, digits and _ and must not start with a digit.',
    })
  const exports = env.length ? `export ${env.map(([k, v]) => `${k}=${shellQuote(v)}`).join(' ')}; ` : ''
  const cd = options.cwd ? `cd ${shellQuote(options.cwd)} && ` : ''
  return `${exports}${cd}${command}`
}

/** The signal an abort asks for: its reason when that names a signal (`SIGINT`, `INT`), else `SIGTERM`. */
export function abortSignalName(signal?: AbortSignal): string {
  const reason = signal?.reason
  return typeof reason === 'string' && /^(SIG)?[A-Z]+$/.test(reason) ? `SIG${reason.replace(/^SIG/, '')}` : 'SIGTERM'
}

/** The server refused the channel (e.g. MaxSessions): nothing ran, safe to queue and retry. */
export class ChannelRefused extends Error {}
/** The connection was gone before the command was sent: nothing ran, safe to retry elsewhere. */
export class NotStarted extends Error {}

export const lostTransport = (where: string, cause?: unknown) =>
  new CrabboxError(`lost the SSH connection to ${where} while a command was running`, {
    exit: 'lostTransport',
    code: 'lost_transport',
    hint: 'The runner may have died or the network dropped. The command was not re-run; check the runner and run it again.',
    cause,
  })

/*
 * A spare session channel, opened ahead of time, saves the channel-open round
 * trip of the next command: a warm exec then costs one round trip, like an
 * OpenSSH ControlMaster mux client. ssh2 has no public "open a bare session"
 * call, so these two use its internals (ssh2 is pinned at 1.17.0).
 */
interface RawClient {
  _chanMgr: { add(wrapper: unknown): number }
  _protocol: { session(id: number, window: number, packet: number): void; exec(id: number, command: string, wantReply: boolean): void }
}
interface RawChannel {
  outgoing: { state: string; id: number }
  _callbacks: Array<(failed: boolean | Error) => void>
  _client: RawClient
  subtype?: string
  allowHalfOpen: boolean
}
const MAX_WINDOW = 2 * 1024 * 1024
const PACKET_SIZE = 32 * 1024

const channelOpen = (channel: ClientChannel) => (channel as unknown as RawChannel).outgoing.state === 'open'

/** Opens a session channel without a request on it yet. */
export function openBareSession(client: Client): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    const raw = client as unknown as RawClient
    const wrapper = Object.assign((error: Error | undefined, channel: ClientChannel) => (error ? reject(error) : resolve(channel)), {
      type: 'session',
    })
    const id = raw._chanMgr.add(wrapper)
    if (id === -1) return reject(new Error('No free channels available'))
    raw._protocol.session(id, MAX_WINDOW, PACKET_SIZE)
  })
}

/** What ssh2's own exec does once its channel is open: send the request, wait for the reply. */
function execOnOpenChannel(
  channel: ClientChannel,
  command: string,
  callback: (error: Error | undefined, channel: ClientChannel) => void,
): void {
  const raw = channel as unknown as RawChannel
  raw._callbacks.push((failed) => {
    if (failed) {
      channel.close()
      return callback(failed === true ? new Error('Unable to exec') : failed, channel)
    }
    raw.subtype = 'exec'
    raw.allowHalfOpen = true
    callback(undefined, channel)
  })
  raw._client._protocol.exec(raw.outgoing.id, command, true)
}

/**
 * ssh2's Channel.signal() is a no-op once our side sent EOF (stdin ended),
 * which is the normal state of a running command, so send the request directly
 * while the channel is open or half-closed by us.
 */
function sendSignal(channel: ClientChannel, name: string): void {
  const raw = channel as unknown as {
    outgoing: { state: string; id: number }
    _client: { _protocol: { signal(id: number, name: string): void } }
  }
  if (raw.outgoing.state !== 'open' && raw.outgoing.state !== 'eof') return
  try {
    raw._client._protocol.signal(raw.outgoing.id, name)
  } catch {
    // unknown signal name or a dead protocol: the kill timer still closes the channel
  }
}

/** How long a signalled command gets before it is killed and its channel closed. */
const KILL_GRACE_MS = 5000
/**
 * How long a closed channel may then stay open. sshd keeps a session until its
 * command exits, and refuses signals for forced-command sessions (older sshd has
 * no signal support at all): without a limit Ctrl-C would wait for the command.
 */
const CLOSE_GRACE_MS = 3000

/**
 * Runs one command on one fresh channel of `client`. Resolves with the remote
 * exit status; rejects with ChannelRefused/NotStarted when nothing ran, or a
 * 255 CrabboxError when the transport died after the command was sent.
 */
export function execOnClient(
  client: Client,
  where: string,
  command: string,
  options: ExecOptions = {},
  spare?: ClientChannel,
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    // A spare handed to us and not used must still be closed, or it holds a server session for good.
    const unused = (error: unknown) => {
      spare?.close()
      reject(error)
    }
    if (options.signal?.aborted) return unused(new NotStarted('aborted before start'))
    let full: string
    try {
      full = remoteCommand(command, options)
    } catch (error) {
      return unused(error)
    }
    const onChannel = (error: Error | undefined, channel: ClientChannel) => {
      if (!error) return run(channel)
      // Failures of the channel open itself mean the command was never sent; anything
      // later (the exec request in flight) may have started it, so it is never retried.
      if (/Channel open failure/.test(error.message)) return reject(new ChannelRefused(error.message))
      if (/No response from server|Not connected/.test(error.message)) return reject(new NotStarted(error.message))
      reject(lostTransport(where, error))
    }
    try {
      if (spare && channelOpen(spare)) execOnOpenChannel(spare, full, onChannel)
      else client.exec(full, onChannel)
    } catch (error) {
      // ssh2 throws synchronously when the socket is already gone.
      return reject(new NotStarted((error as Error).message))
    }

    const run = (channel: ClientChannel) => {
      let exit: ExecResult | undefined
      let killTimer: NodeJS.Timeout | undefined
      // Set once the interrupted command outlived its grace and was sent SIGKILL by us.
      let escalated = false
      const stdin = options.stdin
      if (options.stdout) channel.pipe(options.stdout, { end: false })
      else channel.on('data', (chunk: Buffer) => options.onStdout?.(chunk))
      if (options.stderr) channel.stderr.pipe(options.stderr, { end: false })
      else channel.stderr.on('data', (chunk: Buffer) => options.onStderr?.(chunk))
      channel.on('exit', (code: number | null, signal?: string) => (exit = exitOf(code, signal)))
      let settled = false
      const settle = () => {
        if (settled) return
        settled = true
        options.signal?.removeEventListener('abort', onAbort)
        if (killTimer) clearTimeout(killTimer)
        if (stdin instanceof Readable) stdin.unpipe(channel)
        // Killed by our own escalation: it ended because of the interrupt (Ctrl-C is 130, not 137).
        // A signal sent while the remote shell was between two commands reaches only the shell,
        // which then waits for the next one: that one never saw it and lives until the kill.
        if (exit && !(escalated && exit.signal === 'SIGKILL')) resolve(exit)
        else if (options.signal?.aborted) resolve({ code: null, signal: abortSignalName(options.signal) })
        else reject(lostTransport(where))
      }
      const onAbort = () => {
        sendSignal(channel, abortSignalName(options.signal))
        killTimer = setTimeout(() => {
          escalated = true
          sendSignal(channel, 'SIGKILL')
          channel.close()
          // Stop waiting; the remote command may outlive us, as with a killed `ssh`.
          killTimer = setTimeout(settle, CLOSE_GRACE_MS)
          killTimer.unref()
        }, KILL_GRACE_MS)
        killTimer.unref()
      }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      // Aborted while the channel was opening: the exec request is already out, so stop it now.
      if (options.signal?.aborted) onAbort()
      channel.on('close', settle)
      channel.on('error', () => {}) // surfaced through 'close' without an exit status
      if (stdin instanceof Readable) {
        // pipe() gives backpressure both ways: the SSH window pauses the source.
        stdin.once('error', () => channel.close())
        stdin.pipe(channel)
      } else {
        channel.end(stdin)
      }
    }
  })
}

const exitOf = (code: number | null | undefined, signal?: string): ExecResult =>
  code === null || code === undefined ? { code: null, signal: signal ?? 'SIGKILL' } : { code }

/** Opens a pty channel: a login shell, or `command` when given (with cwd/env applied). */
export function openPty(client: Client, where: string, options: ShellOptions): Promise<ShellSession> {
  return new Promise((resolve, reject) => {
    const pty = { term: options.term ?? 'xterm-256color', rows: options.rows ?? 24, cols: options.cols ?? 80 }
    const onChannel = (error: Error | undefined, channel: ClientChannel) => {
      if (error)
        return reject(/Channel open failure/.test(error.message) ? new ChannelRefused(error.message) : new NotStarted(error.message))
      let exit: ExecResult | undefined
      channel.on('exit', (code: number | null, signal?: string) => (exit = exitOf(code, signal)))
      channel.on('error', () => {})
      const done = new Promise<ExecResult>((resolveDone, rejectDone) =>
        channel.on('close', () => (exit ? resolveDone(exit) : rejectDone(lostTransport(where)))),
      )
      resolve({ channel, done, resize: (rows, cols) => channel.setWindow(rows, cols, 0, 0) })
    }
    let wrapped: string | undefined
    try {
      // eslint-disable-next-line no-template-curly-in-string -- a shell parameter expansion, not a template
      wrapped = options.cwd || options.env ? remoteCommand(options.command ?? 'exec "${SHELL:-sh}" -l', options) : options.command
    } catch (error) {
      return reject(error)
    }
    try {
      if (wrapped) client.exec(wrapped, { pty }, onChannel)
      else client.shell(pty, onChannel)
    } catch (error) {
      reject(new NotStarted((error as Error).message))
    }
  })
}

/**
 * A remote result as the command's exit code: the status itself, or 128 + the signal's number as
 * a shell reports it (`TERM` or `SIGTERM`); a signal this platform has no number for gives 255,
 * OpenSSH's own code for an end it cannot tell.
 */
export function exitCodeOf(result: ExecResult): number {
  if (result.code !== null) return result.code
  const name = result.signal ?? 'SIGKILL'
  const number = constants.signals[(name.startsWith('SIG') ? name : `SIG${name}`) as NodeJS.Signals]
  return number ? 128 + number : 255
}
