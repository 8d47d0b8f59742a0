import type { Readable } from 'node:stream'

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
}

export interface ExecOptions {
  cwd?: string
  env?: Record<string, string>
  stdin?: Readable | Buffer | string
  onStdout?: (chunk: Buffer) => void
  onStderr?: (chunk: Buffer) => void
  /** Aborting sends the remote process a signal and closes the channel. */
  signal?: AbortSignal
}

/** `code` is the remote exit status; null when the process died by `signal`. */
export interface ExecResult {
  code: number | null
  signal?: string
}

/** One obvious call over a pooled connection. */
export interface SshSession {
  exec(command: string, options?: ExecOptions): Promise<ExecResult>
  close(): Promise<void>
}
