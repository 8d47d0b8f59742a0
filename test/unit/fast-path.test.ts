import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { fastCommand } from '../../src/fast-path.js'

/*
 * bin/run.js takes the fast path only for argv `fastCommand` fully understands; everything
 * else must go to the full oclif CLI (undefined here), so its parsing, help and errors apply.
 */

const home = mkdtempSync(join(tmpdir(), 'crabbox-fast-path-'))
const env: NodeJS.ProcessEnv = { HOME: home, XDG_DATA_HOME: join(home, 'data') }
const fast = (line: string, extra: NodeJS.ProcessEnv = {}) => fastCommand(line.split(' '), { ...env, ...extra })

afterAll(() => rmSync(home, { recursive: true, force: true }))

describe('fastCommand: the argv the fast path takes', () => {
  it('reads the hot forms of ssh and run', () => {
    expect(fast('ssh --id blue-crab -- uname -a')).toEqual({ command: 'ssh', flags: { id: 'blue-crab' }, words: ['uname', '-a'] })
    expect(fast('ssh --id=blue-crab -q -- true')).toEqual({ command: 'ssh', flags: { id: 'blue-crab', quiet: true }, words: ['true'] })
    expect(fast('ssh blue-crab -- true')).toEqual({ command: 'ssh', flags: {}, lease: 'blue-crab', words: ['true'] })
    expect(fast('ssh --provider ssh --static-host h.example --static-port 2222 -- true')).toEqual({
      command: 'ssh',
      flags: { provider: 'ssh', 'static-host': 'h.example', 'static-port': '2222' },
      words: ['true'],
    })
    expect(fast('run --id cbx_abcdef123456 --no-sync --timing-json --debug -- make -j4 test')).toEqual({
      command: 'run',
      flags: { id: 'cbx_abcdef123456', 'no-sync': true, 'timing-json': true, debug: true },
      words: ['make', '-j4', 'test'],
    })
    // Words after `--` are the remote command, whatever they look like.
    expect(fast('run --id x -- --help --json')?.words).toEqual(['--help', '--json'])
  })

  it('leaves everything else to the full CLI', () => {
    for (const line of [
      'ssh --id x', // no command: an interactive shell
      'ssh --id x --',
      'ssh --id x --print -- true',
      'ssh --id x --help -- true',
      'ssh --id x -h -- true',
      'ssh --id x --json -- true',
      'ssh --id x --tty -- true',
      'ssh --id x --id y -- true', // oclif refuses a flag given twice
      'ssh --id -- true', // a missing value
      'ssh --id= -- true',
      'ssh --id -q -- true',
      'ssh --quiet=true --id x -- true',
      'ssh --idd x -- true', // a typo wants oclif's suggestion
      'ssh a b -- true', // oclif makes the second word part of the command
      'ssh --id x extra -- true',
      'ssh --static-host h lease -- true',
      'run -- true', // a new lease: not the hot path
      'run --id x --',
      'run --id x lease -- true',
      'run --id x --keep -- true',
      'run --id x --sync-only -- true',
      'run --id x --junit a.xml -- true',
      'run --id x --ttl 1h -- true',
      'run --id x --no-sync --no-sync -- true',
      'list --id x -- true',
      'status x',
    ]) {
      expect(fast(line), line).toBeUndefined()
    }
  })

  it('steps aside for CRABBOX_NO_FAST_PATH, JSON output by environment and user plugins', () => {
    expect(fast('ssh --id x -- true', { CRABBOX_NO_FAST_PATH: '1' })).toBeUndefined()
    expect(fast('ssh --id x -- true', { CRABBOX_NO_FAST_PATH: '0' })).toBeDefined()
    expect(fast('ssh --id x -- true', { CRABBOX_CONTENT_TYPE: 'JSON' })).toBeUndefined()
    mkdirSync(join(home, 'data', 'crabbox'), { recursive: true })
    writeFileSync(join(home, 'data', 'crabbox', 'package.json'), '{"oclif":{"plugins":["my-plugin"]}}')
    expect(fast('ssh --id x -- true')).toBeUndefined()
    expect(fast('run --id x -- true')).toBeUndefined()
    expect(fast('ssh --id x -- true', { CRABBOX_DATA_DIR: join(home, 'elsewhere') })).toBeDefined()
  })
})
