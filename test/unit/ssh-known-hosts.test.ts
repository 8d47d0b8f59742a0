import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { utils } from 'ssh2'
import { describe, expect, it } from 'vitest'
import { generateEd25519Pair } from '../../src/transport/ssh/keys.js'
import { fingerprint, knownHostsName, pinHostKeys, verifyHostKey } from '../../src/transport/ssh/known-hosts.js'

// generateEd25519Pair: ssh2's own generator now and then writes a pair it cannot parse back.
const hostKey = async () => {
  const parsed = utils.parseKey((await generateEd25519Pair()).public)
  if (parsed instanceof Error) throw parsed
  return (Array.isArray(parsed) ? parsed[0] : parsed).getPublicSSH()
}

describe('host-key pinning', () => {
  it('trusts the first key, accepts it again, and rejects a different one with both fingerprints', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'kh-')), 'lease', 'known_hosts')
    const first = await hostKey()
    const second = await hostKey()
    expect(await verifyHostKey(path, '10.0.0.1', 2222, first)).toBeUndefined()
    expect(await verifyHostKey(path, '10.0.0.1', 2222, first)).toBeUndefined()
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean)).toHaveLength(1)
    expect(statSync(path).mode & 0o777).toBe(0o600)

    const mismatch = await verifyHostKey(path, '10.0.0.1', 2222, second)
    expect(mismatch?.exitCode).toBe(7)
    expect(mismatch?.message).toContain(fingerprint(first))
    expect(mismatch?.message).toContain(fingerprint(second))
    expect(mismatch?.hint).toContain(`ssh-keygen -R '[10.0.0.1]:2222' -f ${path}`)
    // Another port of the same host is its own pin, as in OpenSSH.
    expect(await verifyHostKey(path, '10.0.0.1', 22, second)).toBeUndefined()
  })

  it('pins keys given with the lease on every port, replacing trust-on-first-use pins', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'kh-')), 'lease', 'known_hosts')
    const [given, offered, earlier] = await Promise.all([hostKey(), hostKey(), hostKey()])
    expect(await verifyHostKey(path, '10.0.0.2', 22, earlier)).toBeUndefined()
    await pinHostKeys(path, '10.0.0.2', [22, 2222, 22], [`ssh-ed25519 ${given.toString('base64')} a comment`, 'not a key'])
    expect(readFileSync(path, 'utf8')).toBe(
      `10.0.0.2 ssh-ed25519 ${given.toString('base64')}\n[10.0.0.2]:2222 ssh-ed25519 ${given.toString('base64')}\n`,
    )
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(await verifyHostKey(path, '10.0.0.2', 22, given)).toBeUndefined()
    expect(await verifyHostKey(path, '10.0.0.2', 2222, given)).toBeUndefined()
    // Never trusted on first use, on any pinned port, not even the key pinned before.
    for (const [port, key] of [
      [22, offered],
      [2222, offered],
      [22, earlier],
    ] as const) {
      const mismatch = await verifyHostKey(path, '10.0.0.2', port, key)
      expect(mismatch?.exitCode).toBe(7)
      expect(mismatch?.message).toContain(fingerprint(given))
    }
    // Keys given but none usable: an error, not a silent fall back to trust on first use.
    await expect(pinHostKeys(path, '10.0.0.2', [22], ['ssh-ed25519 bm90IGEga2V5'])).rejects.toMatchObject({ exitCode: 7 })
  })

  it('names hosts the way OpenSSH does and fingerprints like ssh-keygen -l', () => {
    expect(knownHostsName('h', 22)).toBe('h')
    expect(knownHostsName('h', 2222)).toBe('[h]:2222')
    expect(fingerprint(Buffer.from('x'))).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/)
  })
})
