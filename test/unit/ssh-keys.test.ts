import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ensureLeaseKey } from '../../src/transport/ssh/keys.js'

describe('per-lease keys', () => {
  const saved = process.env.XDG_CONFIG_HOME
  beforeEach(() => {
    process.env.XDG_CONFIG_HOME = mkdtempSync(join(tmpdir(), 'crabbox-keys-'))
  })
  afterEach(() => {
    if (saved === undefined) delete process.env.XDG_CONFIG_HOME
    else process.env.XDG_CONFIG_HOME = saved
  })

  it('generates an OpenSSH ed25519 key once, 0600 in a 0700 folder, beside the lease known_hosts', async () => {
    const key = await ensureLeaseKey('cbx_0123456789ab')
    expect(key.privateKeyPath).toBe(join(process.env.XDG_CONFIG_HOME!, 'crabbox', 'testboxes', 'cbx_0123456789ab', 'id_ed25519'))
    expect(key.knownHostsPath).toBe(join(dirname(key.privateKeyPath), 'known_hosts'))
    expect(statSync(key.privateKeyPath).mode & 0o777).toBe(0o600)
    expect(statSync(dirname(key.privateKeyPath)).mode & 0o777).toBe(0o700)
    expect(key.publicKey).toMatch(/^ssh-ed25519 AAAA\S+ crabbox cbx_0123456789ab$/)
    // OpenSSH itself reads the private key and derives the same public key.
    const derived = execFileSync('ssh-keygen', ['-y', '-f', key.privateKeyPath], { encoding: 'utf8' }).trim()
    expect(key.publicKey.startsWith(derived.split(' ').slice(0, 2).join(' '))).toBe(true)
    expect(await ensureLeaseKey('cbx_0123456789ab')).toEqual(key)
  })

  it('recovers a key whose .pub went missing (a crash between the writes) instead of looping, and concurrent callers agree', async () => {
    const key = await ensureLeaseKey('cbx_00000000pub0')
    rmSync(`${key.privateKeyPath}.pub`)
    expect(await ensureLeaseKey('cbx_00000000pub0')).toEqual(key)
    const together = await Promise.all(Array.from({ length: 5 }, () => ensureLeaseKey('cbx_00000000par0')))
    for (const each of together) expect(each).toEqual(together[0])
  })

  it('refuses lease IDs that would escape the key folder', async () => {
    await expect(ensureLeaseKey('../etc')).rejects.toThrow(/invalid lease id/)
  })
})
