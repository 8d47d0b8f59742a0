import { afterEach, describe, expect, it, vi } from 'vitest'
import { CrabboxError } from '../../src/errors.js'
import type { LeaseBackend } from '../../src/services/lease.js'
import { obtainLease } from '../../src/services/run/lifecycle.js'
import { nullRecorder } from '../../src/services/run/recorder.js'
import type { Progress } from '../../src/ui/progress.js'

afterEach(() => {
  vi.useRealTimers()
})

describe("the provider's state while a lease is made", () => {
  it('a broker lease shows its state beside the leasing phase, polled every 5 s, and no read once the broker answered', async () => {
    vi.useFakeTimers()
    const phases: string[] = []
    const progress: Progress = {
      phase: (message) => void phases.push(message),
      transfer() {},
      info() {},
      detail() {},
      warn() {},
      done() {},
      fail() {},
    }
    const read: string[] = []
    let asked = ''
    let refuse = () => {}
    const backend: LeaseBackend = {
      mode: 'broker',
      provider: 'hetzner',
      readiness: () => 'managed',
      acquire: ({ leaseId }) => {
        asked = leaseId ?? ''
        return new Promise((_, reject) => (refuse = () => reject(new CrabboxError('no capacity', { exit: 'provisioning' }))))
      },
      machineState: async (lease) => {
        read.push(lease.id)
        return read.length < 3 ? 'broker: provisioning' : 'broker: active'
      },
      resolve: () => Promise.reject(new Error('unused')),
      release: async () => {},
      list: async () => [],
      findGone: async () => undefined,
    }
    const leasing = obtainLease(backend, { keep: false, signal: new AbortController().signal, progress, recorder: nullRecorder })
    const outcome = leasing.catch((error: unknown) => error)

    await vi.advanceTimersByTimeAsync(0)
    expect(phases).toEqual(['leasing a hetzner runner', 'leasing a hetzner runner · broker: provisioning'])
    await vi.advanceTimersByTimeAsync(4_900)
    expect(read).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(5_200)
    // The same state again draws nothing new; a changed one does.
    expect(read).toHaveLength(3)
    expect(phases.at(-1)).toBe('leasing a hetzner runner · broker: active')
    expect(phases.filter((p) => p.endsWith('broker: provisioning'))).toHaveLength(1)
    // Every read asks for the lease this invocation requested.
    expect(new Set(read)).toEqual(new Set([asked]))

    refuse()
    expect(await outcome).toBeInstanceOf(CrabboxError)
    const reads = read.length
    await vi.advanceTimersByTimeAsync(30_000)
    expect(read).toHaveLength(reads)
  })
})
