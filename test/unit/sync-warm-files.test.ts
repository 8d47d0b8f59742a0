import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { sparesInTurn } from '../../src/transport/ssh/agent-folder.js'
import { sleep, until } from '../support/fixtures.js'

/** A spare worker's read-ahead, in a module instance of its own per test (its state is per process). */
describe('reading ahead in a spare worker (warm-files.ts)', () => {
  let dir: string
  let saved: string | undefined
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'crabbox-warm-'))
    saved = process.env.XDG_STATE_HOME
    process.env.XDG_STATE_HOME = join(dir, 'state')
  })
  afterEach(() => {
    if (saved === undefined) delete process.env.XDG_STATE_HOME
    else process.env.XDG_STATE_HOME = saved
    rmSync(dir, { recursive: true, force: true })
  })

  const load = async () => {
    const { vi } = await import('vitest')
    vi.resetModules()
    return import('../../src/services/sync/warm-files.js')
  }

  /** A checkout's cache folder with one file, parsed by counting. */
  function setUp(warm: Awaited<ReturnType<typeof load>>) {
    const root = join(dir, 'checkout')
    const folder = join(dir, 'state', 'crabbox', 'sync', 'cache')
    mkdirSync(folder, { recursive: true })
    const file = join(folder, 'manifest.json')
    const replace = (text: string) => (writeFileSync(`${file}.tmp`, text), renameSync(`${file}.tmp`, file))
    replace('one')
    const parses: string[] = []
    const spec = {
      folder: () => folder,
      path: () => Promise.resolve(file),
      parse: (data: Buffer) => (parses.push(data.toString()), { text: data.toString() }),
    }
    /** A sync noted the checkout and the spare, idle for a while, parsed the file. */
    const readAheadOnce = async () => {
      await warm.noteLastCheckout(root)
      await warm.readAhead([spec])
      await until('the spare to parse the file', () => parses.length > 0, 5000, 10)
    }
    return { root, file, replace, parses, spec, readAheadOnce, read: () => warm.readParsed(file, spec.parse) }
  }

  it('a command uses what the spare parsed while the file is unchanged, and reads a replaced file itself', async () => {
    const warm = await load()
    const { replace, parses, readAheadOnce, read } = setUp(warm)
    await readAheadOnce()
    expect(parses).toEqual(['one'])
    warm.stopReadingAhead()
    // The command: no parse of its own.
    expect(await read()).toEqual({ text: 'one' })
    expect(parses).toEqual(['one'])
    // The sync rewrote it: the copy kept no longer counts.
    replace('two')
    expect(await read()).toEqual({ text: 'two' })
    expect(parses).toEqual(['one', 'two'])
  })

  it('parses again when the sync rewrites the file while the spare waits, and stops once it takes a command', async () => {
    const warm = await load()
    const { replace, parses, readAheadOnce, read } = setUp(warm)
    await readAheadOnce()
    replace('two')
    await until('the spare to parse the new file', () => parses.includes('two'), 5000, 10)
    warm.stopReadingAhead()
    expect(await read()).toEqual({ text: 'two' })
    replace('three')
    await sleep(warm.IDLE_MS + 200)
    expect(parses).toEqual(['one', 'two'])
  })

  it('only the oldest spare reads ahead; the next one does once the oldest is taken (its socket goes)', async () => {
    const warm = await load()
    const { root, parses, spec } = setUp(warm)
    await warm.noteLastCheckout(root)
    const roster = join(dir, 'agent')
    mkdirSync(roster)
    writeFileSync(join(roster, 'spare-3.sock'), '')
    writeFileSync(join(roster, 'spare-4.sock'), '')
    const leader = () => sparesInTurn(readdirSync(roster))[0] === 'spare-4.sock'
    await warm.readAhead([spec], { leader, roster })
    await sleep(warm.IDLE_MS + 200)
    expect(parses).toEqual([])
    rmSync(join(roster, 'spare-3.sock'))
    await until('the next spare to parse', () => parses.length > 0, 5000, 10)
    expect(parses).toEqual(['one'])
    warm.stopReadingAhead()
  })

  it('the thin client tries spares oldest first for a run that syncs, as listed otherwise', () => {
    const names = ['spare-10.sock', 'agent.sock', 'spare-9.sock', 'spare-x.sock', 'spare-11.sock']
    expect(sparesInTurn(names)).toEqual(['spare-9.sock', 'spare-10.sock', 'spare-11.sock'])
    expect(sparesInTurn(names, false)).toEqual(['spare-10.sock', 'spare-9.sock', 'spare-11.sock'])
  })

  it('reads nothing ahead before any sync noted a checkout; a missing file is undefined', async () => {
    const warm = await load()
    const { spec, parses, file, read } = setUp(warm)
    await warm.readAhead([spec])
    await sleep(warm.IDLE_MS + 200)
    expect(parses).toEqual([])
    warm.stopReadingAhead()
    rmSync(file)
    expect(await read()).toBeUndefined()
  })
})
