import { createHash } from 'node:crypto'
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { CrabboxError } from '../../errors.js'

/**
 * Per-lease host-key pinning in OpenSSH known_hosts format, so `ssh -o
 * UserKnownHostsFile=<file>` agrees with us: trust on first use (unless the keys
 * came with the lease, see pinHostKeys), then a changed key is a hard failure.
 * The user's ~/.ssh/known_hosts is never read or written.
 */

/** OpenSSH names non-22 ports `[host]:port`. */
export const knownHostsName = (host: string, port: number) => (port === 22 ? host : `[${host}]:${port}`)

/** `SHA256:<base64 without padding>`, what `ssh-keygen -l` prints. */
export function fingerprint(rawKey: Buffer): string {
  return `SHA256:${createHash('sha256').update(rawKey).digest('base64').replace(/=+$/, '')}`
}

/** The key type is the first length-prefixed string of the SSH wire blob. */
function keyType(rawKey: Buffer): string {
  const length = rawKey.readUInt32BE(0)
  return rawKey.subarray(4, 4 + length).toString('latin1')
}

async function pinnedKeys(path: string, name: string): Promise<Buffer[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
  const keys: Buffer[] = []
  for (const line of text.split('\n')) {
    const [names, , blob] = line.trim().split(/\s+/)
    if (!names || names.startsWith('#') || !blob) continue
    if (names.split(',').includes(name)) keys.push(Buffer.from(blob, 'base64'))
  }
  return keys
}

class HostKeyMismatch extends CrabboxError {
  constructor(host: string, port: number, knownHostsPath: string, expected: string, actual: string) {
    const name = knownHostsName(host, port)
    super(
      `host key for ${name} changed: pinned ${expected}, offered ${actual}. ` +
        'Someone may be intercepting the connection, or the runner was rebuilt.',
      {
        exit: 'ssh',
        code: 'host_key_changed',
        hint: `If the runner was rebuilt, reset the pin: ssh-keygen -R '${name}' -f ${knownHostsPath}  (or delete that file)`,
      },
    )
  }
}

/**
 * Checks `rawKey` against the pin for host:port; pins it when there is none.
 * Returns the mismatch (to be thrown by the caller once ssh2 gives up) or undefined.
 */
export async function verifyHostKey(
  knownHostsPath: string,
  host: string,
  port: number,
  rawKey: Buffer,
): Promise<HostKeyMismatch | undefined> {
  const name = knownHostsName(host, port)
  const pinned = await pinnedKeys(knownHostsPath, name)
  if (pinned.some((key) => key.equals(rawKey))) return undefined
  if (pinned.length > 0) return new HostKeyMismatch(host, port, knownHostsPath, fingerprint(pinned[0]), fingerprint(rawKey))
  await mkdir(dirname(knownHostsPath), { recursive: true, mode: 0o700 })
  await appendFile(knownHostsPath, `${name} ${keyType(rawKey)} ${rawKey.toString('base64')}\n`, { mode: 0o600 })
  return undefined
}

/** Whether `blob` (base64) is an SSH wire key blob of `type`: what a key written as `type blob` must be. */
function blobOfType(blob: string, type: string): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) return false
  const raw = Buffer.from(blob, 'base64')
  return raw.length >= 4 && raw.readUInt32BE(0) + 4 <= raw.length && keyType(raw) === type
}

/**
 * Pins keys the lease came with (`type base64`, e.g. a static pool entry's host key from
 * the broker) for host on every port, replacing the file's pins: any other key the host
 * offers is then a mismatch, never trusted on first use. Malformed keys are skipped; none
 * usable is an error (never a silent fall back to trust on first use).
 */
export async function pinHostKeys(knownHostsPath: string, host: string, ports: number[], keys: readonly string[]): Promise<void> {
  const parsed = keys.map((key) => key.trim().split(/\s+/)).filter(([type, blob]) => type && blob && blobOfType(blob, type))
  if (!parsed.length)
    throw new CrabboxError(`the host keys given for ${host} are not OpenSSH public keys ("ssh-ed25519 AAAA…")`, {
      exit: 'ssh',
      code: 'host_key_invalid',
      hint: "fix the pool entry's hostKey at the broker (the key part of the host's ssh_host_*_key.pub)",
    })
  const lines = [...new Set(ports)].flatMap((port) => parsed.map(([type, blob]) => `${knownHostsName(host, port)} ${type} ${blob}`))
  await mkdir(dirname(knownHostsPath), { recursive: true, mode: 0o700 })
  await writeFile(knownHostsPath, `${lines.join('\n')}\n`, { mode: 0o600 })
}
