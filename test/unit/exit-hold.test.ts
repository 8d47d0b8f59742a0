import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { heldWork, holdExit } from '../../src/exit-hold.js'
import { cacheDir } from '../../src/services/sync/hash-cache.js'
import { awaitRemembered, markRemembering } from '../../src/services/sync/remembering.js'
import { sleep } from '../support/fixtures.js'

/** Whether `promise` settled within a few turns of the event loop. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  void promise.then(
    () => (done = true),
    () => (done = true),
  )
  await sleep(30)
  return done
}

describe('work held past the exit code (exit-hold.ts)', () => {
  it('waits for every held piece of work, a failed one included', async () => {
    let finish!: () => void
    holdExit(new Promise<void>((resolve) => (finish = resolve)))
    holdExit(Promise.reject(new Error('bookkeeping failed')))
    const waiting = heldWork()
    expect(await settled(waiting)).toBe(false)
    finish()
    await waiting
    // Nothing is held any more: the next wait ends at once.
    expect(await settled(heldWork())).toBe(true)
  })

  it('stops waiting after its limit', async () => {
    holdExit(new Promise(() => {}))
    await heldWork(20)
  })
})

describe("the next sync waits for a run's bookkeeping (remembering.ts)", () => {
  let dir: string
  let saved: string | undefined
  let root: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'crabbox-remembering-'))
    saved = process.env.XDG_STATE_HOME
    process.env.XDG_STATE_HOME = join(dir, 'state')
    root = join(dir, 'checkout')
  })
  afterEach(() => {
    if (saved === undefined) delete process.env.XDG_STATE_HOME
    else process.env.XDG_STATE_HOME = saved
    rmSync(dir, { recursive: true, force: true })
  })

  /** Another process's mark: a live `sleep` while it writes. */
  function otherWriter() {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' })
    mkdirSync(cacheDir(root), { recursive: true })
    const mark = join(cacheDir(root), `remembering-${child.pid}`)
    writeFileSync(mark, '')
    return { mark, child }
  }

  it('waits while another live process writes, and goes on once it is done', async () => {
    const { mark, child } = otherWriter()
    try {
      const waiting = awaitRemembered(root)
      expect(await settled(waiting)).toBe(false)
      rmSync(mark)
      await waiting
    } finally {
      child.kill()
    }
  })

  it('does not wait for a writer that died, and clears its mark', async () => {
    const { mark, child } = otherWriter()
    child.kill('SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
    expect(await settled(awaitRemembered(root))).toBe(true)
    expect(existsSync(mark)).toBe(false)
  })

  it("marks this process's own writing, first sync included, and never waits for itself", async () => {
    const done = markRemembering(root)
    expect(readdirSync(cacheDir(root))).toEqual([`remembering-${process.pid}`])
    expect(await settled(awaitRemembered(root))).toBe(true)
    done()
    expect(readdirSync(cacheDir(root))).toEqual([])
  })
})
