import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { brokerSettings, enabledProviders, settingsProblems } from '../../src/services/broker-settings.js'

const dir = mkdtempSync(join(tmpdir(), 'crabbox-broker-settings-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const base = { CRABBOX_PUBLIC_URL: 'https://crabbox.example.com', CRABBOX_SHARED_TOKEN: 't' }

describe('broker deploy settings', () => {
  it('come from CRABBOX_* broker variables, then the file, then stdin; client settings and other variables stay out', async () => {
    const file = join(dir, 'broker.env')
    writeFileSync(file, "# comment\nCRABBOX_SHARED_TOKEN='from-file'\nHETZNER_TOKEN=h\nexport CRABBOX_DEFAULT_ORG=acme\n")
    const settings = await brokerSettings(
      { file, stdin: async () => 'CRABBOX_DEFAULT_ORG=from-stdin\n' },
      {
        CRABBOX_SHARED_TOKEN: 'from-env',
        CRABBOX_COORDINATOR: 'https://client.example',
        CRABBOX_WRANGLER: '/bin/x',
        AWS_ACCESS_KEY_ID: 'mine',
      },
    )
    expect(settings).toEqual({ CRABBOX_SHARED_TOKEN: 'from-file', HETZNER_TOKEN: 'h', CRABBOX_DEFAULT_ORG: 'from-stdin' })
  })

  it('an unreadable --env-file is exit 2 naming it', async () => {
    await expect(brokerSettings({ file: join(dir, 'missing.env') }, {})).rejects.toMatchObject({ exitCode: 2 })
  })

  it('enabled providers: the default one and every one with settings', () => {
    expect(enabledProviders({})).toEqual(['hetzner'])
    expect(enabledProviders({ CRABBOX_STATIC_POOL: '[]' })).toEqual(['static'])
    expect(enabledProviders({ CRABBOX_DEFAULT_PROVIDER: 'aws', HCLOUD_TOKEN: 'x' })).toEqual(['aws', 'hetzner'])
  })

  it('a complete set has no problems; each missing piece is named', () => {
    expect(settingsProblems({ ...base, CRABBOX_HETZNER_TOKEN: 'h' })).toEqual([])
    expect(settingsProblems({ ...base, CRABBOX_STATIC_POOL: '[{"name":"a","host":"10.0.0.1"}]' })).toEqual([])
    expect(settingsProblems({ CRABBOX_PUBLIC_URL: 'http://127.0.0.1:8787', CRABBOX_ADMIN_TOKEN: 'a', HETZNER_TOKEN: 'h' })).toEqual([])
    expect(settingsProblems({ CRABBOX_STATIC_POOL: 'nope' })).toEqual([
      'CRABBOX_PUBLIC_URL is not set (the https:// address users reach the broker at; login links use it)',
      'nobody could log in: set CRABBOX_GITHUB_CLIENT_ID (GitHub login), CRABBOX_SHARED_TOKEN or CRABBOX_ADMIN_TOKEN',
      'CRABBOX_STATIC_POOL is not valid JSON',
    ])
    expect(settingsProblems({ ...base, CRABBOX_PUBLIC_URL: 'http://crabbox.example.com', CRABBOX_DEFAULT_PROVIDER: 'azure' })).toEqual([
      'CRABBOX_PUBLIC_URL=http://crabbox.example.com is not an https:// URL',
      'CRABBOX_DEFAULT_PROVIDER=azure is not one of hetzner, aws, static',
    ])
    expect(settingsProblems({ ...base, CRABBOX_GITHUB_CLIENT_ID: 'id', CRABBOX_STATIC_POOL: '[]' })).toEqual([
      'GitHub login needs CRABBOX_GITHUB_CLIENT_SECRET',
      'GitHub login needs CRABBOX_SESSION_SECRET',
      'CRABBOX_STATIC_POOL must be a non-empty JSON array',
    ])
  })
})
