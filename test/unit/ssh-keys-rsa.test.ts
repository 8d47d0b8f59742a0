import { execFileSync } from 'node:child_process'
import { mkdtempSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { leaseKeyType } from '../../src/cloud/targets.js'
import { ensureLeaseKey } from '../../src/transport/ssh/keys.js'

describe('RSA lease keys for Windows runners', () => {
  const saved = process.env.XDG_CONFIG_HOME
  beforeEach(() => {
    process.env.XDG_CONFIG_HOME = mkdtempSync(join(tmpdir(), 'crabbox-rsa-'))
  })
  afterEach(() => {
    if (saved === undefined) delete process.env.XDG_CONFIG_HOME
    else process.env.XDG_CONFIG_HOME = saved
  })

  it('are RSA for Windows on AWS and Azure only', () => {
    expect(leaseKeyType('aws', 'windows')).toBe('rsa')
    expect(leaseKeyType('azure', 'windows')).toBe('rsa')
    expect(leaseKeyType('aws', 'linux')).toBe('ed25519')
    expect(leaseKeyType('ssh', 'windows')).toBe('ed25519')
    expect(leaseKeyType('aws', 'macos')).toBe('ed25519')
  })

  it('generates an OpenSSH RSA 4096 key at id_rsa, 0600, that ssh-keygen reads, once', async () => {
    const key = await ensureLeaseKey('cbx_00000000a5a0', 'rsa')
    expect(key.privateKeyPath).toBe(join(process.env.XDG_CONFIG_HOME!, 'crabbox', 'testboxes', 'cbx_00000000a5a0', 'id_rsa'))
    expect(key.knownHostsPath).toBe(join(dirname(key.privateKeyPath), 'known_hosts'))
    expect(statSync(key.privateKeyPath).mode & 0o777).toBe(0o600)
    expect(key.publicKey).toMatch(/^ssh-rsa AAAA\S+ crabbox cbx_00000000a5a0$/)
    const bits = execFileSync('ssh-keygen', ['-l', '-f', key.privateKeyPath], { encoding: 'utf8' })
    expect(bits).toMatch(/^4096 .*\(RSA\)\n$/)
    const derived = execFileSync('ssh-keygen', ['-y', '-f', key.privateKeyPath], { encoding: 'utf8' }).trim()
    expect(key.publicKey.startsWith(derived.split(' ').slice(0, 2).join(' '))).toBe(true)
    expect(await ensureLeaseKey('cbx_00000000a5a0', 'rsa')).toEqual(key)
  }, 60_000)
})
