import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { sshProvider } from '../../src/providers/ssh.js'

describe('a static Mac', () => {
  const saved = { state: process.env.XDG_STATE_HOME, config: process.env.XDG_CONFIG_HOME }
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'crabbox-static-mac-'))
    process.env.XDG_STATE_HOME = join(dir, 'state')
    process.env.XDG_CONFIG_HOME = join(dir, 'config')
    writeFileSync(join(dir, 'key'), 'not read here\n')
  })
  afterEach(() => {
    for (const [name, value] of [
      ['XDG_STATE_HOME', saved.state],
      ['XDG_CONFIG_HOME', saved.config],
    ] as const)
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    rmSync(dir, { recursive: true, force: true })
  })

  const acquire = (config: Config) =>
    sshProvider.acquire(
      { leaseId: 'static_mac', keep: true, ttlSeconds: 60, idleTimeoutSeconds: 60, privateKeyPath: '', publicKey: '', knownHostsPath: '' },
      { config, progress: undefined as never },
    )
  const mac = (extra: Partial<Config> = {}): Config => {
    const base = defaultConfig()
    return {
      ...base,
      target: 'macos',
      static: { ...base.static, host: 'mac.test', user: 'alice' },
      ssh: { ...base.ssh, key: join(dir, 'key') },
      ...extra,
    }
  }

  it('works under the user home folder unless a work root is configured', async () => {
    expect((await acquire(mac())).workRoot).toBe('/Users/alice/crabbox')
    expect((await acquire(mac({ workRoot: '/opt/ci', sources: { workRoot: 'flag --work-root' } }))).workRoot).toBe('/opt/ci')
    const linux = { ...mac(), target: 'linux' as const }
    expect((await acquire(linux)).workRoot).toBe('/work/crabbox')
  })
})
