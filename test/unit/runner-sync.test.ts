import { describe, expect, it } from 'vitest'
import type { Lease } from '../../src/providers/types.js'
import { runnerInput, syncsRunners } from '../../src/services/runner-sync.js'

const lease = (details: Record<string, unknown>): Lease => ({
  id: 'tbx_01kqyahxh67z6qtwtsdkt5xcst',
  slug: 'blue-crab',
  provider: 'blacksmith-testbox',
  ssh: { host: '', port: 0, fallbackPorts: [], user: '', privateKeyPath: '', knownHostsPath: '' },
  workRoot: '',
  state: 'active',
  keep: true,
  details,
})

describe('runner sync input', () => {
  it('maps a testbox list row to the broker runner input, leaving out empty (-) columns', () => {
    const row = {
      id: 'x',
      status: 'ready',
      repo: 'openclaw/crab',
      workflow: 'ci.yml',
      job: '-',
      ref: 'main',
      created: '2026-12-05T23:00:00Z',
    }
    expect(runnerInput(lease({ status: 'ready', row }))).toEqual({
      id: 'tbx_01kqyahxh67z6qtwtsdkt5xcst',
      status: 'ready',
      repo: 'openclaw/crab',
      workflow: 'ci.yml',
      ref: 'main',
      createdAt: '2026-12-05T23:00:00Z',
    })
  })

  it('falls back to the lease status without a row, and syncs only blacksmith-testbox', () => {
    expect(runnerInput(lease({ status: 'unknown' }))).toEqual({ id: 'tbx_01kqyahxh67z6qtwtsdkt5xcst', status: 'unknown' })
    expect(syncsRunners('blacksmith-testbox')).toBe(true)
    expect(syncsRunners('aws')).toBe(false)
  })
})
