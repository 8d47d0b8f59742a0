import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CLAIM_SWEEP_MS, claimClientGone, sweepClaims } from '../../src/transport/ssh/claim-sweep.js'

// Claims left behind by a thin client killed mid-command (src/transport/ssh/claim-sweep.ts).
describe('the agent’s claim sweep', () => {
  const folders: string[] = []
  afterEach(() => {
    for (const dir of folders.splice(0)) rmSync(dir, { recursive: true, force: true })
  })

  /** A pid that was a process a moment ago and has ended. */
  const endedPid = () => spawnSync('true').pid!
  const claimOf = (pid: number, suffix: string) => `claim-${pid.toString(16)}-${suffix}`

  it('knows a claim’s client by the pid in its name', () => {
    expect(claimClientGone(claimOf(process.pid, 'a'))).toBe(false)
    expect(claimClientGone(claimOf(endedPid(), 'b'))).toBe(true)
    // Not a claim: never counted as one whose client is gone.
    expect(claimClientGone('spare-1.sock')).toBe(false)
  })

  it('removes only claims older than a minute whose client has ended', () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-claims-'))
    folders.push(dir)
    const ended = endedPid()
    const old = new Date(Date.now() - CLAIM_SWEEP_MS - 5000)
    const make = (name: string, at?: Date) => {
      writeFileSync(join(dir, name), '')
      if (at) utimesSync(join(dir, name), at, at)
    }
    make(claimOf(ended, 'a1'), old)
    make(claimOf(ended, 'b2'))
    make(claimOf(process.pid, 'c3'), old)
    make('spare-1.sock', old)
    make('lane-ssh', old)

    expect(sweepClaims(dir)).toBe(1)
    expect(existsSync(join(dir, claimOf(ended, 'a1')))).toBe(false)
    expect(readdirSync(dir).sort()).toEqual([claimOf(ended, 'b2'), claimOf(process.pid, 'c3'), 'lane-ssh', 'spare-1.sock'].sort())
    // A folder that went away sweeps nothing.
    expect(sweepClaims(join(dir, 'gone'))).toBe(0)
  })
})
