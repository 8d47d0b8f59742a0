import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { stateDir } from '../../src/paths.js'
import { fastCommand } from '../../src/fast-argv.js'
import { runOnLane } from '../../src/services/run/on-lane.js'
import type { LaneCall } from '../../src/transport/ssh/agent-lane.js'
import type { ExecOptions, ExecResult } from '../../src/transport/ssh/types.js'

// A `run` on the agent lane (src/services/run/on-lane.ts), with the exec recorded instead of sent:
// which commands reach the runner, and when. The real sshd cases are in agent-lane.test.ts.
describe('runOnLane', () => {
  const target = { host: 'runner.test', port: 22, fallbackPorts: [], user: 'u', privateKeyPath: '/k', knownHostsPath: '/h' }

  type Sync = NonNullable<NonNullable<LaneCall['route']['run']>['sync']>

  function laneCall(exec: (command: string, options: ExecOptions) => Promise<ExecResult>, sync?: Sync) {
    const stop = new AbortController()
    const again = new AbortController()
    const sent: string[] = []
    let stderr = ''
    let began = 0
    const flags = sync ? [] : ['--no-sync']
    const call: LaneCall = {
      route: { key: 'k', target, prefix: '', stamps: [], run: { env: {}, leaseId: 'cbx_1', slug: 'blue-crab', provider: 'ssh', sync } },
      fast: fastCommand(['run', '--id', 'cbx_1', ...flags, '--', 'sleep', '1'], {})!,
      env: {},
      exec: (command, options) => {
        sent.push(command)
        return exec(command, options)
      },
      stdout: new PassThrough(),
      stderr: new Writable({ write: (chunk: Buffer, _encoding, done) => ((stderr += chunk.toString()), done()) }),
      stdin: undefined,
      stop: stop.signal,
      again: again.signal,
      closed: new Set(),
      begin: () => void began++,
      watch: async () => ({ id: 'w', seq: 1 }),
    }
    return { call, stop, again, sent, stderr: () => stderr, began: () => began }
  }

  it('a client hanging up after its exit code signals nothing on the runner', async () => {
    const { call, stop, sent, stderr } = laneCall(async () => ({ code: 3 }))
    expect(await runOnLane(call)).toBe(3)
    // The thin client closes its socket once it has the exit code; the agent hears a hang-up.
    stop.abort('SIGHUP')
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(sent).toHaveLength(1)
    expect(stderr()).toMatch(/^running on blue-crab \(runner\.test\) sleep 1\nexit 3 · total \S+ · sync 0ms \(skipped\) · command \S+\n$/)
  })

  it('Ctrl-C while the command runs signals its process group over a second exec and reports 130', async () => {
    const { call, stop, sent } = laneCall(
      (command, options) =>
        new Promise((resolve) => {
          if (!command.includes('kill -INT')) options.signal?.addEventListener('abort', () => resolve({ code: null, signal: 'INT' }))
          else resolve({ code: 0 })
        }),
    )
    const exited = runOnLane(call)
    stop.abort('SIGINT')
    expect(await exited).toBe(130)
    expect(sent).toHaveLength(2)
    expect(sent[1]).toMatch(/^pf=\/tmp\/crabbox-cbx_1-[0-9a-f]{8}\.pid; \[ -s "\$pf" \] && kill -INT/)
  })

  it('a second signal ends the run at once, the remote command still stopping', async () => {
    const { call, stop, again } = laneCall((command) => (command.includes('kill -') ? Promise.resolve({ code: 0 }) : new Promise(() => {})))
    const exited = runOnLane(call)
    stop.abort('SIGINT')
    again.abort('SIGINT')
    expect(await exited).toBe(130)
  })

  it('a run that syncs declines before it began when no snapshot vouches for the checkout, sending nothing', async () => {
    const repoRoot = mkdtempSync(join(tmpdir(), 'crabbox-lane-unit-'))
    try {
      const config = { exclude: [], delete: true, checksum: false, gitSeed: true, fingerprint: true }
      const sync = { repoRoot, workdir: '/work/x', stateDir: stateDir(), config }
      const { call, sent, began, stderr } = laneCall(async () => ({ code: 0 }), sync)
      expect(await runOnLane(call)).toEqual({ declined: expect.stringContaining('changed') })
      // Another state folder: its snapshot is not the one this agent would read.
      const elsewhere = laneCall(async () => ({ code: 0 }), { ...sync, stateDir: join(repoRoot, 'other-state') })
      expect(await runOnLane(elsewhere.call)).toEqual({ declined: expect.stringContaining('state folder') })
      expect([sent, elsewhere.sent, began(), elsewhere.began()]).toEqual([[], [], 0, 0])
      // What it printed stays held by the agent (LaneCall.begin) and is dropped with the decline.
      expect(stderr()).toContain('syncing')
    } finally {
      rmSync(repoRoot, { recursive: true, force: true })
    }
  })

  it('a --no-sync run begins at once', async () => {
    const { call, began } = laneCall(async () => ({ code: 0 }))
    expect(await runOnLane(call)).toBe(0)
    expect(began()).toBe(1)
  })
})
