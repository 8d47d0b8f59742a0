import { readFile } from 'node:fs/promises'
import { Client, type ClientChannel } from 'ssh2'
import { CrabboxError } from '../../errors.js'
import { ChannelRefused, execOnClient, openBareSession, openPty } from './exec.js'
import { verifyHostKey } from './known-hosts.js'
import { candidatePorts, DEFAULT_CONNECT_TIMEOUT_MS } from './ports.js'
import type { ExecOptions, ExecResult, ShellOptions, ShellSession, SshTarget } from './types.js'

export interface ConnectOptions {
  /** Whole handshake budget per port (TCP, key exchange, auth). */
  connectTimeoutMs?: number
  /** Channels open at once; stays below the server's MaxSessions (sshd default 10). */
  maxChannels?: number
  /**
   * Keep one session channel open ahead of time so the next exec skips the
   * channel-open round trip (the connection agent does; one-shot CLIs need not).
   */
  spareChannel?: boolean
  /** Keepalive period (default 15 s); two silent periods end the connection. */
  keepaliveIntervalMs?: number
  /** Called as each port is tried, for progress lines. */
  onAttempt?: (port: number) => void
}

const DEFAULT_MAX_CHANNELS = 8
// One keepalive every 15 s; ssh2 gives up on the tick after `countMax` unanswered ones,
// so 1 here means two silent intervals (30 s) end the connection: a dead runner is
// reported as exit 255 within 30 s instead of hanging.
const KEEPALIVE_INTERVAL_MS = 15_000
const KEEPALIVE_COUNT_MAX = 1
/** Waits before asking again for a channel the server refused while none of ours was open (see `withChannel`). */
const REFUSED_RETRIES_MS = [20, 60, 180]
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Why one port failed; `transport` failures move on to the next port, others stop. */
class AttemptFailed extends Error {
  constructor(
    message: string,
    readonly transport: boolean,
    readonly fatal?: CrabboxError,
    /** The server refused every key we offered. */
    readonly auth = false,
  ) {
    super(message)
  }
}

/** An authenticated ssh2 client with a channel cap and a FIFO queue beyond it. */
export class SshConnection {
  private active = 0
  private cap: number
  private readonly waiting: Array<() => void> = []
  private readonly closeListeners = new Set<() => void>()
  private spare?: Promise<ClientChannel | undefined>
  private spareFailed = false
  private spareRefused = 0
  closed = false
  lastUsed = Date.now()

  constructor(
    readonly client: Client,
    readonly target: SshTarget,
    readonly port: number,
    maxChannels: number,
    private readonly keepSpare = false,
  ) {
    this.cap = Math.max(1, maxChannels)
    this.refillSpare()
    client.on('close', () => {
      this.closed = true
      for (const listener of this.closeListeners) listener()
    })
  }

  get where(): string {
    return `${this.target.user}@${this.target.host}:${this.port}`
  }

  get busy(): number {
    return this.active + this.waiting.length
  }

  onClose(listener: () => void): void {
    this.closeListeners.add(listener)
  }

  private async acquire(): Promise<void> {
    if (this.active < this.cap) {
      this.active++
      return
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  private release(): void {
    this.lastUsed = Date.now()
    const next = this.waiting.shift()
    if (next) next()
    else this.active--
  }

  /**
   * Runs under the channel cap; a refused channel lowers the cap and waits its turn again. Refused
   * with nothing else of ours open, it is asked for again a few times: a server that allows one
   * session (MaxSessions 1) may not have freed the one of a command that just ended.
   */
  private async withChannel<T>(open: () => Promise<T>): Promise<T> {
    for (let retry = 0; ;) {
      await this.acquire()
      try {
        this.lastUsed = Date.now()
        return await open()
      } catch (error) {
        if (!(error instanceof ChannelRefused)) throw error
        // The server's MaxSessions is lower than we assumed: learn it from the refusal.
        if (this.active > 1) this.cap = Math.max(1, this.active - 1)
        else if (retry < REFUSED_RETRIES_MS.length) await delay(REFUSED_RETRIES_MS[retry++])
        else throw error
      } finally {
        this.release()
      }
    }
  }

  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    return this.withChannel(async () => {
      const spare = await this.takeSpare()
      const running = execOnClient(this.client, this.where, command, options, spare)
      // The next command's channel opens now, beside this one. Opened only once this one ended,
      // a command right after it (`ssh` then `run`, an agent's next call) waited out the rest of
      // that open's round trip: ≈ 12 ms of `run` after `ssh` at 50 ms. Only when this command
      // runs on a spare (its own channel is open already, so the spare cannot take its session)
      // and runs alone (in a burst of parallel execs the spare would take a session they need).
      if (spare && this.active === 1) this.refillSpare()
      return running
    }).finally(() => {
      if (this.active === 0) this.refillSpare()
    })
  }

  private takeSpare(): Promise<ClientChannel | undefined> {
    const spare = this.spare
    this.spare = undefined
    return spare ?? Promise.resolve(undefined)
  }

  private refillSpare(): void {
    if (!this.keepSpare || this.spare || this.closed || this.spareFailed) return
    const besideCommand = this.active > 0
    const spare: Promise<ClientChannel | undefined> = openBareSession(this.client).then(
      (channel) => {
        this.spareRefused = 0
        return channel
      },
      () => {
        if (this.spare === spare) this.spare = undefined
        // Refused beside a running command: the server may allow one session only (MaxSessions 1),
        // so it is opened again once the command ended. Refused alone twice in a row (the first time
        // the server may still have been freeing the session of a command that just ended), or gone:
        // no spare from now on.
        if (besideCommand) return undefined
        if (this.spareRefused++ > 0) this.spareFailed = true
        else setTimeout(() => this.active === 0 && this.refillSpare(), REFUSED_RETRIES_MS[1]).unref()
        return undefined
      },
    )
    this.spare = spare
  }

  /**
   * An interactive session with a pty (a login shell, or `command` under a pty).
   * Resolves once the channel is open; the channel slot is held until it closes.
   */
  shell(options: ShellOptions): Promise<ShellSession> {
    return new Promise((resolve, reject) => {
      this.withChannel(() =>
        openPty(this.client, this.where, options).then((session) => {
          resolve(session)
          return session.done.catch(() => undefined)
        }),
      ).catch(reject)
    })
  }

  /**
   * A TCP stream to `host:port` as the runner sees it (`direct-tcpip`, like `ssh -L`), e.g.
   * its loopback VNC. Holds a channel slot until the stream closes; a refused or failed
   * connect on the runner rejects with the server's reason.
   */
  forwardOut(host: string, port: number): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      this.withChannel(
        () =>
          new Promise<void>((done, failed) => {
            this.client.forwardOut('127.0.0.1', 0, host, port, (error, channel) => {
              if (error) return failed(error)
              resolve(channel)
              channel.once('close', () => done())
            })
          }),
      ).catch(reject)
    })
  }

  close(): void {
    this.closed = true
    this.client.end()
  }
}

function attempt(target: SshTarget, port: number, privateKey: Buffer, timeoutMs: number, keepaliveMs: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client()
    let mismatch: CrabboxError | undefined
    let settled = false
    const fail = (error: AttemptFailed) => {
      if (settled) return
      settled = true
      client.end()
      client.destroy()
      reject(error)
    }
    client.on('ready', () => {
      settled = true
      // Nagle would hold each small request ~40 ms waiting for an ACK.
      client.setNoDelay(true)
      resolve(client)
    })
    client.on('error', (error: Error & { level?: string }) => {
      if (mismatch) return fail(new AttemptFailed(mismatch.message, false, mismatch))
      const transport = error.level === 'client-socket' || error.level === 'client-timeout'
      fail(new AttemptFailed(error.message, transport, undefined, error.level === 'client-authentication'))
    })
    client.on('close', () => fail(new AttemptFailed('connection closed during the handshake', true)))
    client.connect({
      host: target.host,
      port,
      username: target.user,
      privateKey,
      // ssh2 offers the key file first, then the agent's keys.
      ...(target.agentSocket ? { agent: target.agentSocket } : {}),
      readyTimeout: timeoutMs,
      keepaliveInterval: keepaliveMs,
      keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
        verifyHostKey(target.knownHostsPath, target.host, port, key).then(
          (result) => {
            mismatch = result
            verify(result === undefined)
          },
          (error: Error) => {
            mismatch = new CrabboxError(`cannot read or write ${target.knownHostsPath}: ${error.message}`, { exit: 'ssh' })
            verify(false)
          },
        )
      },
    })
  })
}

/**
 * Connects to the primary port, then each fallback port, moving on only when
 * the transport failed (refused, unreachable, timed out). Authentication
 * failures and changed host keys stop at once: another port would not help.
 */
export async function connect(target: SshTarget, options: ConnectOptions = {}): Promise<SshConnection> {
  let privateKey: Buffer
  try {
    privateKey = await readFile(target.privateKeyPath)
  } catch (error) {
    throw new CrabboxError(`cannot read SSH key ${target.privateKeyPath}: ${(error as Error).message}`, {
      exit: 'ssh',
      code: 'ssh_key_unreadable',
      hint: 'Set ssh.key (or CRABBOX_SSH_KEY) to an OpenSSH private key.',
    })
  }
  const failures: string[] = []
  for (const port of candidatePorts(target)) {
    options.onAttempt?.(port)
    try {
      const client = await attempt(
        target,
        port,
        privateKey,
        options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        options.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS,
      )
      return new SshConnection(client, target, port, options.maxChannels ?? DEFAULT_MAX_CHANNELS, options.spareChannel)
    } catch (error) {
      const failed = error as AttemptFailed
      if (failed.fatal) throw failed.fatal
      if (failed.auth) {
        const tried = `the SSH key ${target.privateKeyPath}${target.agentSocket ? ' and the ssh-agent keys' : ''}`
        throw new CrabboxError(`${target.user}@${target.host}:${port} refused ${tried}`, {
          exit: 'ssh',
          code: 'ssh_auth',
          hint: `Authorize that key for ${target.user} on ${target.host}, or set ssh.key (CRABBOX_SSH_KEY) to a key the host accepts.`,
        })
      }
      if (!failed.transport) {
        throw new CrabboxError(`SSH to ${target.user}@${target.host}:${port} failed: ${failed.message}`, {
          exit: 'ssh',
          hint: `Check that the key ${target.privateKeyPath} is authorized for ${target.user} on ${target.host}.`,
        })
      }
      failures.push(`${port}: ${failed.message}`)
    }
  }
  throw new CrabboxError(`cannot reach ${target.host} over SSH (${failures.join('; ')})`, {
    exit: 'ssh',
    code: 'ssh_unreachable',
    hint: 'Check that the runner is up and that one of its SSH ports is open from here.',
  })
}
