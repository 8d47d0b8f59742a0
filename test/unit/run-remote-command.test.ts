import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { forwardedEnv, remoteCommandFor } from '../../src/services/run/remote-command.js'

/** Runs the runner-side command line the way sshd would: through `sh -c`. */
const onRunner = (command: string) =>
  spawnSync('sh', ['-c', command], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: '/nonexistent' } })

describe('remote command quoting', () => {
  it('delivers every argument exactly as typed, spaces, quotes and globs included', () => {
    const argv = ['printf', '[%s]', "it's", 'two  spaces', '$HOME', '*', '"q"', '', 'a\nb']
    const { command, viaShell } = remoteCommandFor(argv)
    expect(viaShell).toBe(false)
    expect(onRunner(command).stdout).toBe('[it\'s][two  spaces][$HOME][*]["q"][][a\nb]')
  })

  it('passes the exit code through, and without a pid file touches no file', () => {
    expect(onRunner(remoteCommandFor(['sh', '-c', 'exit 7']).command).status).toBe(7)
    expect(statSync('/dev/null').isCharacterDevice()).toBe(true)
  })

  it('runs a single argument with shell syntax, --shell, or standalone operators as a bash script', () => {
    const single = remoteCommandFor(['echo a && echo b | tr b c'])
    expect(single.viaShell).toBe(true)
    expect(onRunner(single.command).stdout).toBe('a\nc\n')
    const operators = remoteCommandFor(['echo', 'x y', '&&', 'echo', 'z'])
    expect(operators.viaShell).toBe(true)
    expect(onRunner(operators.command).stdout).toBe('x y\nz\n')
    expect(remoteCommandFor(['echo', '$0'], { shell: true }).viaShell).toBe(true)
    expect(remoteCommandFor(['uname', '-a']).viaShell).toBe(false)
  })

  it('records the process group in the pid file while the command runs and removes it after', () => {
    const pidFile = `/tmp/crabbox-unit-${process.pid}.pid`
    const result = onRunner(remoteCommandFor(['sh', '-c', `cat ${pidFile}`], { pidFile }).command)
    expect(result.stdout).toMatch(/^\d+\n$/)
    expect(result.status).toBe(0)
    expect(() => execFileSync('test', ['-e', pidFile])).toThrow()
    // A failing command: its own status, and the pid file is gone all the same.
    expect(onRunner(remoteCommandFor(['sh', '-c', `test -s ${pidFile} && exit 7`], { pidFile }).command).status).toBe(7)
    expect(() => execFileSync('test', ['-e', pidFile])).toThrow()
  })

  it('prints no job-control chatter, even when the command ends before the group is set up', () => {
    // A slow runner: the login shell pauses before each of its own commands, so `echo` finishes inside
    // the job-control window (bash would otherwise report "[1]+ Done" on the command's stderr).
    const home = mkdtempSync(join(tmpdir(), 'crabbox-unit-home-'))
    try {
      writeFileSync(join(home, '.bash_profile'), "trap 'sleep 0.05' DEBUG\n")
      const command = remoteCommandFor(['echo', 'only this']).command
      const result = spawnSync('sh', ['-c', command], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: home } })
      expect([result.status, result.stdout, result.stderr]).toEqual([0, 'only this\n', ''])
      const missing = spawnSync('sh', ['-c', remoteCommandFor(['crabbox-no-such-command']).command], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, HOME: home },
      })
      expect(missing.status).toBe(127)
      expect(missing.stderr).toMatch(/crabbox-no-such-command: command not found/)
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  })
})

describe('env.allow forwarding', () => {
  it('forwards exact names and PREFIX* matches only', () => {
    const env = { CI: '1', NODE_OPTIONS: '--x', APP_A: 'a', APP_B: 'b', APPLE: 'no', SECRET: 's' }
    expect(forwardedEnv(['CI', 'APP_*'], env)).toEqual({ CI: '1', APP_A: 'a', APP_B: 'b' })
    expect(forwardedEnv([], env)).toEqual({})
  })
})
