import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LaneRoutes, laneKey, type LaneAsk, stampPaths } from '../../src/transport/ssh/agent-lane.js'
import { exitCodeOf } from '../../src/transport/ssh/exec.js'

// The agent lane's routes (src/transport/ssh/agent-lane.ts): filed under the command's key, used
// only while every file they rest on is as it was, never resting on a file that changed a moment ago.
describe('the agent lane routes', () => {
  const folders: string[] = []
  const folder = () => {
    const made = mkdtempSync(join(tmpdir(), 'crabbox-lane-unit-'))
    folders.push(made)
    return made
  }
  const file = (dir: string, name: string, text: string) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }
  const ask: LaneAsk = {
    build: 'b1',
    fast: { command: 'ssh', flags: { id: 'static_host' } },
    cwd: '/repo',
    env: { HOME: '/home/me', _: '/usr/bin/crabbox' },
  }
  const target = { host: 'h', port: 22, fallbackPorts: [], user: 'u', privateKeyPath: '/k', knownHostsPath: '/kh' }
  /** A clock `ms` ahead: files written now look that much older. */
  const later = (ms: number) => Date.now() + ms

  afterEach(() => {
    for (const dir of folders.splice(0)) rmSync(dir, { recursive: true, force: true })
  })

  it('keys a command by build, flags, folder and environment, but not by the shell’s `_`', () => {
    const key = laneKey(ask)
    expect(laneKey({ ...ask, env: { HOME: '/home/me', _: '/bin/other' } })).toBe(key)
    expect(laneKey({ ...ask, env: { _: '/bin/other', HOME: '/home/me' } })).toBe(key)
    expect(laneKey({ ...ask, env: { HOME: '/home/you' } })).not.toBe(key)
    expect(laneKey({ ...ask, cwd: '/repo/sub' })).not.toBe(key)
    expect(laneKey({ ...ask, build: 'b2' })).not.toBe(key)
    expect(laneKey({ ...ask, fast: { command: 'ssh', flags: { id: 'other' } } })).not.toBe(key)
  })

  it('does not stamp a file that changed within the last second, nor use a route whose file changed', () => {
    const dir = folder()
    const config = file(dir, 'config.yaml', 'provider: ssh\n')
    // Just written: its file system's clock tick may not have moved since.
    expect(stampPaths([config])).toBeUndefined()
    const stamps = stampPaths([config, join(dir, 'absent.yaml')], [], later(1500))
    expect(stamps).toEqual([
      [config, expect.stringMatching(/^\d+:\d+:\d+:\d+$/)],
      [join(dir, 'absent.yaml'), 'absent'],
    ])

    const routes = new LaneRoutes()
    routes.record({ key: laneKey(ask), target, prefix: '', stamps: stamps! })
    expect(routes.take(laneKey(ask))?.target).toEqual(target)
    expect(routes.take(laneKey({ ...ask, cwd: '/elsewhere' }))).toBeUndefined()

    // Edited to the same size with the old times put back: the change time still tells.
    writeFileSync(config, 'provider: aws\n')
    utimesSync(config, new Date(0), new Date(0))
    expect(routes.take(laneKey(ask))).toBeUndefined()
    // Dropped: even the old stamp back would not bring it back.
    expect(routes.take(laneKey(ask))).toBeUndefined()
  })

  it('a file that appears where the route saw none ends the route', () => {
    const dir = folder()
    const stamps = stampPaths([join(dir, 'crabbox.yaml')])!
    const routes = new LaneRoutes()
    routes.record({ key: 'k', target, prefix: '', stamps })
    expect(routes.take('k')).toBeDefined()
    file(dir, 'crabbox.yaml', 'ssh:\n  user: other\n')
    expect(routes.take('k')).toBeUndefined()
  })

  it('a .git folder counts by its presence: git writing in it keeps the route, removing it ends it', () => {
    const dir = folder()
    const git = join(dir, '.git')
    mkdirSync(git)
    // Just made, yet trusted: its times are not part of the stamp.
    const stamps = stampPaths([], [git])!
    expect(stamps).toEqual([[git, expect.stringMatching(/^present:\d+$/)]])
    const routes = new LaneRoutes()
    routes.record({ key: 'k', target, prefix: '', stamps })
    // What `git status` does when it refreshes the index: a lock file made, then renamed.
    writeFileSync(join(git, 'index.lock'), 'x')
    renameSync(join(git, 'index.lock'), join(git, 'index'))
    expect(routes.take('k')).toBeDefined()
    rmSync(git, { recursive: true })
    expect(routes.take('k')).toBeUndefined()
  })

  it('keeps a marker per command in the agent’s folder while a route for it is held', () => {
    const dir = folder()
    const marker = (command: 'ssh' | 'run') => existsSync(join(dir, `lane-${command}`))
    // Left by an agent before this one, whose routes are gone.
    file(dir, 'lane-run', '')
    const routes = new LaneRoutes(dir)
    expect([marker('ssh'), marker('run')]).toEqual([false, false])

    const config = file(dir, 'config.yaml', 'provider: ssh\n')
    const stamps = stampPaths([config], [], later(1500))!
    const run = { env: {}, leaseId: 'static_host', slug: 'host', provider: 'ssh' }
    routes.record({ key: 'ssh-here', target, prefix: '', stamps })
    routes.record({ key: 'run-here', target, prefix: '', stamps: stampPaths([], [dir])!, run })
    expect([marker('ssh'), marker('run')]).toEqual([true, true])

    // The ssh route goes stale: its marker goes with it, the run route's stays.
    writeFileSync(config, 'provider: aws\n')
    expect(routes.take('ssh-here')).toBeUndefined()
    expect([marker('ssh'), marker('run')]).toEqual([false, true])

    routes.clear()
    expect(marker('run')).toBe(false)

    // Its folder gone: the routes still work, and the marker comes back with the folder.
    const gone = folder()
    const homeless = new LaneRoutes(gone)
    rmSync(gone, { recursive: true })
    expect(() => homeless.record({ key: 'k', target, prefix: '', stamps: [] })).not.toThrow()
    expect(homeless.take('k')?.target).toEqual(target)
    mkdirSync(gone)
    homeless.record({ key: 'k2', target, prefix: '', stamps: [] })
    expect(existsSync(join(gone, 'lane-ssh'))).toBe(true)
  })

  it('gives the exit code a process killed by that signal would have', () => {
    expect(exitCodeOf({ code: 3 })).toBe(3)
    expect(exitCodeOf({ code: null, signal: 'SIGTERM' })).toBe(143)
    expect(exitCodeOf({ code: null, signal: 'SIGPIPE' })).toBe(141)
    // The same from every path (lane, worker, run pipeline): a bare name, none, or one without a number here.
    expect(exitCodeOf({ code: null, signal: 'INT' })).toBe(130)
    expect(exitCodeOf({ code: null })).toBe(137)
    expect(exitCodeOf({ code: null, signal: 'SIGNOSUCH' })).toBe(255)
  })
})
