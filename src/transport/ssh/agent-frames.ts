import { closeSync, openSync, rmSync, statSync } from 'node:fs'

/**
 * The connection agent's frames, `[type u8][length u32 BE][payload]` over its unix socket
 * (agent-protocol.ts validates the JSON ones). No library here: the thin client uses this file.
 */
export const Frame = {
  request: 1,
  stdin: 2,
  stdinEnd: 3,
  signal: 4,
  stdout: 10,
  stderr: 11,
  result: 12,
  /** `connect-exec`: the connection is up (payload `{ port }`); stdin and the command's output follow. */
  connected: 13,
  // A thin client (src/thin-client.ts) and a spare worker (src/warm-worker.ts): `request` carries
  // the command (argv, cwd, env) and its claim, a `result` before `started` declines it (the client
  // falls back). 19 is retired (a `go` the client once sent to a request without a claim).
  /** worker → client: the worker made the request's `claim` and runs the command; the client never falls back from here on. */
  started: 15,
  /** worker → client: the command reads stdin; the client forwards its own from now on. */
  stdinWanted: 16,
  /** client → worker: the client's stdout or stderr was closed (payload `stdout` or `stderr`). */
  outputClosed: 17,
  /** client → worker: reading the client's stdin failed. */
  stdinError: 18,
} as const

export function encodeFrame(type: number, payload: Buffer | string | object = Buffer.alloc(0)): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload))
  const head = Buffer.allocUnsafe(5)
  head.writeUInt8(type, 0)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

/** Splits a byte stream into frames; hands each complete one to `onFrame`. */
export function frameDecoder(onFrame: (type: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let buffered: Buffer = Buffer.alloc(0)
  return (chunk) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk
    while (buffered.length >= 5) {
      const length = buffered.readUInt32BE(1)
      if (buffered.length < 5 + length) break
      const type = buffered[0]
      const payload = buffered.subarray(5, 5 + length)
      buffered = buffered.subarray(5 + length)
      onFrame(type, payload)
    }
  }
}

/**
 * Which build of the fast path `file` (dist/fast-path.js) is, run by which Node with which
 * start-up options (`env`'s NODE_OPTIONS and NODE_EXTRA_CA_CERTS, read by Node only while it
 * starts): a thin client and a spare worker pair only when both say the same (a rebuilt or
 * upgraded crabbox, another Node or other options fall back). Undefined when the file is
 * missing (running from src/).
 */
export function buildStamp(file: string, env: NodeJS.ProcessEnv): string | undefined {
  try {
    const stat = statSync(file)
    return JSON.stringify([stat.ino, stat.size, stat.mtimeMs, process.execPath, env.NODE_OPTIONS ?? '', env.NODE_EXTRA_CA_CERTS ?? ''])
  } catch {
    return undefined
  }
}

/**
 * Takes a command's claim for whoever runs it here (a spare worker, the agent lane): true when
 * this side was first. When the client was first it runs the command itself and nobody needs the
 * file any more, so it is removed (the client removes its own once it has the exit code).
 */
export function takeClaim(path: string): boolean {
  const made = createExclusive(path)
  if (made === 'taken') rmSync(path, { force: true })
  return made === 'created'
}

/** What a claim (see `createExclusive`) may be called: nothing that leaves the agent's folder. */
export const CLAIM_NAME = /^claim-[0-9a-f]{1,16}-[0-9a-f]{1,16}$/

/**
 * Creates the empty file `path` (mode 0600) only if nothing is there yet (`O_EXCL`): `created`,
 * `taken` when something was, `failed` on any other error. The thin client and its spare worker
 * decide with it who has a command (the request's claim).
 */
export function createExclusive(path: string): 'created' | 'taken' | 'failed' {
  try {
    closeSync(openSync(path, 'wx', 0o600))
    return 'created'
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EEXIST' ? 'taken' : 'failed'
  }
}
