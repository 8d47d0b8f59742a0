import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import {
  commandString,
  idleMinutes,
  listArgs,
  parseTestboxId,
  parseTestboxList,
  runArgs,
  statusArgs,
  stopArgs,
  warmupArgs,
} from '../../src/providers/blacksmith/args.js'

const config = (blacksmith: Partial<Config['blacksmith']> = {}, idleTimeout = '30m'): Config => ({
  ...defaultConfig(),
  idleTimeout,
  blacksmith: { debug: false, ...blacksmith },
})

describe('blacksmith CLI arguments', () => {
  it('warmup names the workflow, job, ref, key and the idle timeout in whole minutes rounded up', () => {
    const full = config({ org: 'openclaw', workflow: '.github/workflows/testbox.yml', job: 'check', ref: 'main', idleTimeout: '5410s' })
    expect(warmupArgs(full, 'ssh-ed25519 AAAA\n')).toEqual([
      '--org',
      'openclaw',
      'testbox',
      'warmup',
      '.github/workflows/testbox.yml',
      '--job',
      'check',
      '--ref',
      'main',
      '--ssh-public-key',
      'ssh-ed25519 AAAA',
      '--idle-timeout',
      '91',
    ])
    expect(warmupArgs(config({ workflow: 'ci' }), '')).toEqual(['testbox', 'warmup', 'ci', '--idle-timeout', '30'])
  })

  it('the idle timeout falls back to the lease one and is at least a minute', () => {
    expect(idleMinutes(config({}, '2h'))).toBe(120)
    expect(idleMinutes(config({ idleTimeout: '10s' }))).toBe(1)
  })

  it('warmup without a workflow is a usage error naming the setting', () => {
    expect(() => warmupArgs(config(), 'key')).toThrow(/needs a workflow/)
    try {
      warmupArgs(config(), 'key')
    } catch (error) {
      expect((error as { exitCode: number; hint: string }).exitCode).toBe(2)
      expect((error as { hint: string }).hint).toMatch(/CRABBOX_BLACKSMITH_WORKFLOW/)
    }
  })

  it('run, stop, status and list', () => {
    const org = config({ org: 'o' })
    expect(runArgs(org, 'tbx_1', '/k', 'make test', false)).toEqual([
      '--org',
      'o',
      'testbox',
      'run',
      '--id',
      'tbx_1',
      '--ssh-private-key',
      '/k',
      'make test',
    ])
    expect(runArgs(config({ debug: true }), 'tbx_1', undefined, 'x', false)).toEqual(['testbox', 'run', '--id', 'tbx_1', '--debug', 'x'])
    expect(runArgs(config(), 'tbx_1', undefined, 'x', true)).toContain('--debug')
    expect(stopArgs(org, 'tbx_1')).toEqual(['--org', 'o', 'testbox', 'stop', '--id', 'tbx_1'])
    expect(listArgs(config(), true)).toEqual(['testbox', 'list', '--all'])
    expect(statusArgs(config(), 'tbx_1', 60)).toEqual(['testbox', 'status', '--id', 'tbx_1', '--wait', '--wait-timeout', '60s'])
  })

  it('the command is one shell string: words quoted, --shell and a single word as written', () => {
    expect(commandString(['printf', '%s|', 'a b', "it's", '$HOME', 'ü'], false)).toBe(`printf '%s|' 'a b' 'it'\\''s' '$HOME' 'ü'`)
    expect(commandString(['make build && make test'], false)).toBe('make build && make test')
    expect(commandString(['echo', '$HOME'], true)).toBe('echo $HOME')
  })

  it('finds the testbox ID in warmup output and parses list rows', () => {
    expect(parseTestboxId('Warming up testbox tbx_01kqyahxh67z6qtwtsdkt5xcst\nready')).toBe('tbx_01kqyahxh67z6qtwtsdkt5xcst')
    expect(parseTestboxId('no id here')).toBeUndefined()
    const output = [
      'ID                              STATUS  REPO           WORKFLOW                               JOB    REF   CREATED',
      'tbx_01kqyahxh67z6qtwtsdkt5xcst  ready   openclaw/crab  .github/workflows/ci-check-testbox.yml check  main  2026-12-05T23:00:00Z',
      'tbx_short row',
      '',
    ].join('\n')
    expect(parseTestboxList(output)).toEqual([
      {
        id: 'tbx_01kqyahxh67z6qtwtsdkt5xcst',
        status: 'ready',
        repo: 'openclaw/crab',
        workflow: '.github/workflows/ci-check-testbox.yml',
        job: 'check',
        ref: 'main',
        created: '2026-12-05T23:00:00Z',
      },
    ])
  })
})

describe('blacksmith settings', () => {
  it('come from the blacksmith block and the CRABBOX_BLACKSMITH_* variables; `blacksmith` is an alias', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-blacksmith-'))
    try {
      writeFileSync(join(dir, 'crabbox.yaml'), 'provider: blacksmith\nblacksmith:\n  org: openclaw\n  workflow: ci.yml\n  debug: true\n')
      const env = {
        HOME: dir,
        XDG_CONFIG_HOME: join(dir, 'config'),
        CRABBOX_BLACKSMITH_JOB: 'check',
        CRABBOX_BLACKSMITH_REF: 'main',
        CRABBOX_BLACKSMITH_IDLE_TIMEOUT: '45m',
      }
      const { config } = await loadConfig({ cwd: dir, env, warn: () => {} })
      expect(config.provider).toBe('blacksmith-testbox')
      expect(config.blacksmith).toEqual({ org: 'openclaw', workflow: 'ci.yml', job: 'check', ref: 'main', idleTimeout: '45m', debug: true })
      const off = await loadConfig({
        cwd: dir,
        env: { ...env, CRABBOX_BLACKSMITH_DEBUG: '0', CRABBOX_BLACKSMITH_ORG: 'other' },
        warn: () => {},
      })
      expect(off.config.blacksmith).toMatchObject({ org: 'other', debug: false })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
