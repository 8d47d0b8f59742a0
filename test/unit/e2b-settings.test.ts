import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { isDelegatedProvider } from '../../src/providers/registry.js'

describe('e2b settings', () => {
  it('default to the base template under /home/user/crabbox', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-e2b-'))
    try {
      const { config } = await loadConfig({ cwd: dir, env: { HOME: dir, XDG_CONFIG_HOME: join(dir, 'config') }, warn: () => {} })
      expect(config.e2b).toEqual({ template: 'base', workdir: '/home/user/crabbox' })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('come from the e2b block and the CRABBOX_E2B_* variables, the variables winning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-e2b-'))
    try {
      writeFileSync(join(dir, 'crabbox.yaml'), 'provider: e2b\ne2b:\n  template: node20\n  domain: e2b.example\n  workdir: /work\n')
      const env = {
        HOME: dir,
        XDG_CONFIG_HOME: join(dir, 'config'),
        CRABBOX_E2B_API_URL: 'http://127.0.0.1:9',
        CRABBOX_E2B_SANDBOX_URL: 'http://127.0.0.1:10',
        CRABBOX_E2B_WORKDIR: '/srv',
      }
      const { config } = await loadConfig({ cwd: dir, env, warn: () => {} })
      expect(config.provider).toBe('e2b')
      expect(config.e2b).toEqual({
        template: 'node20',
        domain: 'e2b.example',
        apiUrl: 'http://127.0.0.1:9',
        sandboxUrl: 'http://127.0.0.1:10',
        workdir: '/srv',
      })
      const other = await loadConfig({ cwd: dir, env: { ...env, CRABBOX_E2B_TEMPLATE: 'py' }, warn: () => {} })
      expect(other.config.e2b.template).toBe('py')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('e2b is a delegated provider (never brokered)', () => {
    expect(isDelegatedProvider('e2b')).toBe(true)
  })
})
