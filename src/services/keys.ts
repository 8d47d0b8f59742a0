import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { leaseKeyDir } from '../config/paths.js'

export interface LeaseKey {
  privateKeyPath: string
  /** `ssh-ed25519 AAAA… crabbox <leaseId>`, what the runner's authorized_keys needs. */
  publicKey: string
  knownHostsPath: string
}

/**
 * The per-lease key pair: `<config dir>/crabbox/testboxes/<leaseId>/id_ed25519`
 * (0600 in a 0700 folder), generated in-process on first use, reused after.
 * known_hosts sits beside it and pins the runner's host key for this lease only.
 */
export async function ensureLeaseKey(leaseId: string): Promise<LeaseKey> {
  if (!/^[\w.-]+$/.test(leaseId)) throw new Error(`invalid lease id ${JSON.stringify(leaseId)}`)
  const dir = leaseKeyDir(leaseId)
  const privateKeyPath = join(dir, 'id_ed25519')
  const knownHostsPath = join(dir, 'known_hosts')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await chmod(dir, 0o700)
  try {
    const publicKey = (await readFile(`${privateKeyPath}.pub`, 'utf8')).trim()
    await readFile(privateKeyPath)
    return { privateKeyPath, publicKey, knownHostsPath }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  // ssh2 is only loaded when a key is actually generated; it is CommonJS, so `utils` hangs off default.
  const { default: ssh2 } = await import('ssh2')
  const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: `crabbox ${leaseId}` })
  // 'wx': a concurrent generator for the same lease loses cleanly instead of clobbering.
  try {
    await writeFile(privateKeyPath, pair.private, { mode: 0o600, flag: 'wx' })
    await writeFile(`${privateKeyPath}.pub`, `${pair.public}\n`, { mode: 0o644 })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    return ensureLeaseKey(leaseId)
  }
  return { privateKeyPath, publicKey: pair.public, knownHostsPath }
}
