import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { pidAlive, pidRuns } from '../../src/pids.js'

// Whether a pid is still the process a pid file named (src/pids.ts): the agent, daemons, local leases, sync writers.
describe('pid checks', () => {
  it('knows a live process, and whether it still runs the program its pid file meant', () => {
    expect(pidAlive(process.pid)).toBe(true)
    expect(pidRuns(process.pid, 'node')).toBe(true)
    // The same pid, another program's marker: given since to something else.
    expect(pidRuns(process.pid, 'crabbox-no-such-program')).toBe(false)
  })

  it('a process that ended is neither alive nor running', () => {
    const ended = spawnSync('true').pid
    expect(pidAlive(ended)).toBe(false)
    expect(pidRuns(ended, 'true')).toBe(false)
  })
})
