import type { Readable, Writable } from 'node:stream'

/** Where and how to reach one runner over SSH. */
export interface SshTarget {
  host: string
  /** Primary port, tried first. */
  port: number
  /** Tried in order when the primary port fails at the transport level. */
  fallbackPorts: number[]
  user: string
  /** Path to an OpenSSH-format private key. */
  privateKeyPath: string
  /** Per-lease known_hosts file: trust on first use, then pinned. */
  knownHostsPath: string
  /** An ssh-agent socket whose keys are offered after `privateKeyPath` (hosts crabbox does not provision). */
  agentSocket?: string
}

export interface ExecOptions {
  cwd?: string
  env?: Record<string, string>
  stdin?: Readable | Buffer | string
  onStdout?: (chunk: Buffer) => void
  onStderr?: (chunk: Buffer) => void
  /**
   * Instead of the callbacks: streams the output is piped into, with
   * backpressure (a slow consumer pauses the remote command). Not ended.
   */
  stdout?: Writable
  stderr?: Writable
  /** Aborting sends the remote process a signal and closes the channel. */
  signal?: AbortSignal
}

/** `code` is the remote exit status; null when the process died by `signal` (Node style, e.g. `SIGTERM`). */
export interface ExecResult {
  code: number | null
  signal?: string
}

/** One obvious call over a pooled connection. */
export interface SshSession {
  exec(command: string, options?: ExecOptions): Promise<ExecResult>
  /** An interactive pty session (login shell, or a command under a pty). */
  shell(options?: ShellOptions): Promise<ShellSession>
  /** The port the connection actually uses (primary or a fallback). */
  port?: number
  close(): Promise<void>
}

/** An interactive pty session: `command` runs under the pty instead of a login shell. */
export interface ShellOptions {
  command?: string
  cwd?: string
  env?: Record<string, string>
  term?: string
  rows?: number
  cols?: number
}

export interface ShellSession {
  /** Both ends of the terminal: write keystrokes, read what the remote prints. */
  channel: import('ssh2').ClientChannel
  resize(rows: number, cols: number): void
  /** Settles when the remote shell exits; rejects with exit 255 if the transport died. */
  done: Promise<ExecResult>
}
