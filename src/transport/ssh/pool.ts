import { CrabboxError } from '../../errors.js'
import { connect, type ConnectOptions, type SshConnection } from './connection.js'
import { abortSignalName, ChannelRefused, NotStarted } from './exec.js'
import { holdStdin } from './streams.js'
import type { ExecOptions, ExecResult, ShellOptions, ShellSession, SshTarget } from './types.js'

/** One connection per (host, port, user, key); the known_hosts file rides along with the key. */
const poolKey = (target: SshTarget) => `${target.user}@${target.host}:${target.port}|${target.privateKeyPath}|${target.knownHostsPath}`

interface Entry {
  target: SshTarget
  connection: Promise<SshConnection>
  /** Sessions holding this entry open; the in-process pool closes it at zero. */
  refs: number
}

export interface PooledInfo {
  key: string
  target: SshTarget
  port: number
  busy: number
  idleMs: number
}

/**
 * Live SSH connections by target. A dead connection is replaced on next use;
 * a command is retried on a new connection only when it provably never
 * reached the server (the channel was never opened).
 */
export class SshPool {
  private readonly entries = new Map<string, Entry>()

  constructor(private readonly options: ConnectOptions = {}) {}

  private entry(target: SshTarget, options: ConnectOptions): Entry {
    const key = poolKey(target)
    let entry = this.entries.get(key)
    if (!entry) {
      entry = { target, connection: this.dial(key, target, options), refs: 0 }
      this.entries.set(key, entry)
    }
    return entry
  }

  private dial(key: string, target: SshTarget, options: ConnectOptions): Promise<SshConnection> {
    const connection = connect(target, { ...this.options, ...options })
    connection.then(
      (live) => live.onClose(() => this.forget(key, connection)),
      () => this.forget(key, connection),
    )
    return connection
  }

  private forget(key: string, connection: Promise<SshConnection>): void {
    if (this.entries.get(key)?.connection === connection) this.entries.delete(key)
  }

  /** The live connection for `target`, dialling (or re-dialling) as needed. */
  async connection(target: SshTarget, options: ConnectOptions = {}): Promise<SshConnection> {
    const entry = this.entry(target, options)
    const live = await entry.connection
    if (!live.closed) return live
    this.forget(poolKey(target), entry.connection)
    return this.entry(target, options).connection
  }

  retain(target: SshTarget): void {
    this.entry(target, {}).refs++
  }

  /** Drops one reference; the last one closes the connection. */
  async release(target: SshTarget): Promise<void> {
    const key = poolKey(target)
    const entry = this.entries.get(key)
    if (!entry || --entry.refs > 0) return
    this.entries.delete(key)
    await entry.connection.then(
      (live) => live.close(),
      () => {},
    )
  }

  async exec(target: SshTarget, command: string, options: ExecOptions = {}): Promise<ExecResult> {
    // Before the first await: a child's stdout left unread while we connect can be lost.
    const held = holdStdin(options.stdin)
    try {
      for (let attempt = 0; ; attempt++) {
        const live = await this.connection(target)
        try {
          return await live.exec(command, { ...options, stdin: held.stdin })
        } catch (error) {
          // Interrupted before anything ran: an interrupted result (exit 130 for Ctrl-C), not an SSH error.
          if (error instanceof NotStarted && options.signal?.aborted) return { code: null, signal: abortSignalName(options.signal) }
          if (error instanceof NotStarted && attempt === 0) continue
          throw wrapUnstarted(error, live.where)
        }
      }
    } finally {
      held.release()
    }
  }

  async shell(target: SshTarget, options: ShellOptions): Promise<ShellSession> {
    for (let attempt = 0; ; attempt++) {
      const live = await this.connection(target)
      try {
        return await live.shell(options)
      } catch (error) {
        if (error instanceof NotStarted && attempt === 0) continue
        throw wrapUnstarted(error, live.where)
      }
    }
  }

  /** A TCP stream to `host:port` from the runner (e.g. its loopback VNC) over the pooled connection. */
  async forwardOut(target: SshTarget, host: string, port: number): Promise<import('ssh2').ClientChannel> {
    const live = await this.connection(target)
    return live.forwardOut(host, port)
  }

  /** Closes connections unused for `idleMs` with nothing running; returns how many remain. */
  async closeIdle(idleMs: number): Promise<number> {
    const now = Date.now()
    for (const [key, entry] of this.entries) {
      const live = await entry.connection.catch(() => undefined)
      if (!live || live.closed) {
        this.forget(key, entry.connection)
      } else if (live.busy === 0 && now - live.lastUsed >= idleMs) {
        this.entries.delete(key)
        live.close()
      }
    }
    return this.entries.size
  }

  async list(): Promise<PooledInfo[]> {
    const now = Date.now()
    const out: PooledInfo[] = []
    for (const [key, entry] of this.entries) {
      const live = await entry.connection.catch(() => undefined)
      if (live && !live.closed) out.push({ key, target: entry.target, port: live.port, busy: live.busy, idleMs: now - live.lastUsed })
    }
    return out
  }

  async closeAll(): Promise<void> {
    const entries = [...this.entries.values()]
    this.entries.clear()
    await Promise.all(
      entries.map((entry) =>
        entry.connection.then(
          (live) => live.close(),
          () => {},
        ),
      ),
    )
  }

  get size(): number {
    return this.entries.size
  }
}

function wrapUnstarted(error: unknown, where: string): unknown {
  if (error instanceof ChannelRefused) {
    return new CrabboxError(`${where} refused a new SSH session: ${error.message}`, {
      exit: 'ssh',
      hint: 'The server allows fewer sessions than crabbox needs (sshd MaxSessions); raise MaxSessions on the runner.',
    })
  }
  if (error instanceof NotStarted) {
    return new CrabboxError(`the SSH connection to ${where} closed before the command started: ${error.message}`, { exit: 'ssh' })
  }
  return error
}
