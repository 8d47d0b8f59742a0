import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { utils } from 'ssh2'
import { describe, expect, it } from 'vitest'
import { fingerprint, knownHostsName, verifyHostKey } from '../../src/transport/ssh/known-hosts.js'

const hostKey = () => {
  const parsed = utils.parseKey(utils.generateKeyPairSync('ed25519').public)
  if (parsed instanceof Error) throw parsed
  return (Array.isArray(parsed) ? parsed[0] : parsed).getPublicSSH()
}

describe('host-key pinning', () => {
  it('trusts the first key, accepts it again, and rejects a different one with both fingerprints', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'kh-')), 'lease', 'known_hosts')
    const first = hostKey()
    const second = hostKey()
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

  it('names hosts the way OpenSSH does and fingerprints like ssh-keygen -l', () => {
    expect(knownHostsName('h', 22)).toBe('h')
    expect(knownHostsName('h', 2222)).toBe('[h]:2222')
    expect(fingerprint(Buffer.from('x'))).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/)
  })
})
