import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { leaseKeyDir } from '../../paths.js'
import { isLeaseId } from '../../protocol/ids.js'

export interface LeaseKey {
  privateKeyPath: string
  /** `ssh-ed25519 AAAA… crabbox <leaseId>`, what the runner's authorized_keys needs. */
  publicKey: string
  knownHostsPath: string
}

/**
 * Forgets a lease's key folder (key pair and known_hosts) once the lease has ended. Only
 * per-lease folders (`cbx_…`): a static host's folder (`static_<host>`) keeps its host-key
 * pin from one claim to the next.
 */
export async function removeLeaseKey(leaseId: string): Promise<void> {
  if (!isLeaseId(leaseId)) return
  await rm(leaseKeyDir(leaseId), { recursive: true, force: true })
}

/** Key types a lease key can have: ed25519, or RSA 4096 where the runner needs it (AWS imports only RSA keys for Windows). */
export type LeaseKeyType = 'ed25519' | 'rsa'

/** The private key's file name in the lease's key folder. */
export const leaseKeyFile = (type: LeaseKeyType): string => (type === 'rsa' ? 'id_rsa' : 'id_ed25519')

/**
 * The per-lease key pair: `<config dir>/crabbox/testboxes/<leaseId>/id_ed25519`
 * (`id_rsa` for an RSA key; 0600 in a 0700 folder), generated in-process on first use, reused after.
 * known_hosts sits beside it and pins the runner's host key for this lease only.
 */
export async function ensureLeaseKey(leaseId: string, type: LeaseKeyType = 'ed25519'): Promise<LeaseKey> {
  if (!/^[\w.-]+$/.test(leaseId)) throw new Error(`invalid lease id ${JSON.stringify(leaseId)}`)
  const dir = leaseKeyDir(leaseId)
  const privateKeyPath = join(dir, leaseKeyFile(type))
  const knownHostsPath = join(dir, 'known_hosts')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await chmod(dir, 0o700)
  const existing = await readExisting(privateKeyPath, leaseId)
  if (existing) return { privateKeyPath, publicKey: existing, knownHostsPath }
  const pair = type === 'rsa' ? await generateRsaPair(`crabbox ${leaseId}`) : await generateEd25519Pair(`crabbox ${leaseId}`)
  // 'wx': a concurrent generator for the same lease loses cleanly instead of clobbering.
  try {
    await writeFile(privateKeyPath, pair.private, { mode: 0o600, flag: 'wx' })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    return { privateKeyPath, publicKey: (await readExisting(privateKeyPath, leaseId))!, knownHostsPath }
  }
  await writeFile(`${privateKeyPath}.pub`, `${pair.public}\n`, { mode: 0o644 })
  return { privateKeyPath, publicKey: pair.public, knownHostsPath }
}

/**
 * A new ed25519 key pair in OpenSSH format (`private`, and `public` as `type base64 comment`).
 * ssh2's generator drops a leading zero byte of the key about once in 250 pairs and writes
 * keys that nothing can parse (the local runner then died at start, exit 5): such a pair is
 * made again. ssh2 is loaded only here, when a key is actually generated.
 */
export async function generateEd25519Pair(comment?: string): Promise<{ private: string; public: string }> {
  // CommonJS: `utils` hangs off the default export.
  const { default: ssh2 } = await import('ssh2')
  for (;;) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', comment ? { comment } : {})
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error) && !(ssh2.utils.parseKey(pair.public) instanceof Error)) return pair
  }
}

/** A new RSA 4096 key pair in OpenSSH format, for runners that take no ed25519 key. */
export async function generateRsaPair(comment?: string): Promise<{ private: string; public: string }> {
  const { default: ssh2 } = await import('ssh2')
  return ssh2.utils.generateKeyPairSync('rsa', { bits: 4096, ...(comment ? { comment } : {}) })
}

/**
 * The public key of an existing private key, or undefined when there is none.
 * It is derived from the private key, not read from `.pub`: a `.pub` missing
 * (a crash between the two writes, or a concurrent generator not done yet)
 * must not make every later call regenerate, lose the race and retry forever.
 */
async function readExisting(privateKeyPath: string, leaseId: string): Promise<string | undefined> {
  let text: string
  try {
    text = await readFile(privateKeyPath, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  try {
    return (await readFile(`${privateKeyPath}.pub`, 'utf8')).trim()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const { default: ssh2 } = await import('ssh2')
  const parsed = ssh2.utils.parseKey(text)
  if (parsed instanceof Error || Array.isArray(parsed))
    throw new Error(`cannot read SSH key ${privateKeyPath}: ${parsed instanceof Error ? parsed.message : 'several keys'}`)
  const publicKey = `${parsed.type} ${parsed.getPublicSSH().toString('base64')} crabbox ${leaseId}`
  await writeFile(`${privateKeyPath}.pub`, `${publicKey}\n`, { mode: 0o644 })
  return publicKey
}

/**
 * The user's own key, for hosts crabbox does not provision (the ssh provider, a
 * broker's static pool), chosen as `ssh` would: `ssh.key` when set (a leading
 * `~` is the home folder), else `~/.ssh/id_ed25519`, else `~/.ssh/id_rsa`.
 * Undefined when none of them exists.
 */
export function ownSshKey(configured: string | undefined, home = homedir()): string | undefined {
  if (configured) return configured.replace(/^~(?=$|\/)/, home)
  return [join(home, '.ssh', 'id_ed25519'), join(home, '.ssh', 'id_rsa')].find((path) => existsSync(path))
}
