import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Watchers } from '../../src/transport/ssh/agent-watch.js'

/*
 * The agent's file watcher against the real file system: every change bumps
 * the stamp, a folder added or moved gives a new watch (a new id), skipped
 * folders are not watched, and a barrier that cannot be set gives no stamp.
 */
const dirs: string[] = []
const watchers: Watchers[] = []
afterAll(() => {
  for (const w of watchers) w.closeAll()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function setup() {
  const base = mkdtempSync(join(tmpdir(), 'crabbox-watch-'))
  dirs.push(base)
  const root = join(base, 'repo')
  for (const dir of ['src/deep', 'node_modules/x', '.git/objects']) mkdirSync(join(root, dir), { recursive: true })
  writeFileSync(join(root, 'src/deep/a.txt'), 'a')
  const w = new Watchers(join(base, 'agent', 'watch'))
  watchers.push(w)
  return { root, w: settled(w), write: (path: string, text: string) => writeFileSync(join(root, path), text) }
}

/** `stamp` once the walk finished: the first request after a (re)build only starts it. */
function settled(w: Watchers) {
  return {
    async stamp(root: string, skip: string[], since?: { id: string; seq: number }) {
      for (let i = 0; i < 200; i++) {
        const stamp = await w.stamp(root, skip, since)
        if (stamp) return stamp
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      return undefined
    },
    now: (root: string, skip: string[]) => w.stamp(root, skip),
  }
}

describe('agent watchers', () => {
  it('keeps its stamp while nothing changes; any write, in any watched folder, moves it', async () => {
    const { root, w, write } = setup()
    // The first request starts the walk and answers nothing yet.
    expect(await w.now(root, ['node_modules'])).toBeUndefined()
    const first = await w.stamp(root, ['node_modules'])
    expect(first).toMatchObject({ seq: 0 })
    expect(await w.now(root, ['node_modules'])).toEqual(first)
    write('src/deep/a.txt', 'b')
    const after = await w.stamp(root, ['node_modules'])
    expect(after?.id).toBe(first?.id)
    expect(after!.seq).toBeGreaterThan(first!.seq)
    // A new file is an event too; a file renamed over another keeps the folders as they were.
    write('src/new.txt', 'n')
    write('src/tmp.txt', 't')
    renameSync(join(root, 'src/tmp.txt'), join(root, 'src/new.txt'))
    const renamed = await w.stamp(root, ['node_modules'])
    expect(renamed?.id).toBe(first?.id)
    expect(renamed!.seq).toBeGreaterThan(after!.seq)
  })

  it('leaves out skipped and .git folders; a new, removed or moved folder gives a new id', async () => {
    const { root, w, write } = setup()
    const first = await w.stamp(root, ['node_modules'])
    write('node_modules/x/y.txt', 'y')
    write('.git/objects/o', 'o')
    expect(await w.stamp(root, ['node_modules'])).toEqual(first)
    mkdirSync(join(root, 'src/other'))
    // The new folder is not watched yet: no stamp until the walk is done again.
    expect(await w.now(root, ['node_modules'])).toBeUndefined()
    const grown = await w.stamp(root, ['node_modules'])
    expect(grown?.id).not.toBe(first?.id)
    // The new folder is watched now.
    write('src/other/z.txt', 'z')
    const inNew = await w.stamp(root, ['node_modules'])
    expect(inNew?.id).toBe(grown?.id)
    expect(inNew!.seq).toBeGreaterThan(grown!.seq)
    renameSync(join(root, 'src/deep'), join(root, 'src/moved'))
    const moved = await w.stamp(root, ['node_modules'])
    expect(moved?.id).not.toBe(inNew?.id)
    // Other skip lists are another watch.
    expect((await w.stamp(root, []))?.id).not.toBe(moved?.id)
  })

  it('gives no stamp for a missing root, a replaced root, or when its barrier folder cannot be made', async () => {
    const { root, w } = setup()
    expect(await w.now(join(root, 'missing'), [])).toBeUndefined()
    const first = await w.stamp(root, [])
    renameSync(root, `${root}.old`)
    mkdirSync(root)
    const second = await w.stamp(root, [])
    expect(second?.id).not.toBe(first?.id)
    const base = mkdtempSync(join(tmpdir(), 'crabbox-watch-'))
    dirs.push(base)
    writeFileSync(join(base, 'file'), '')
    const blocked = new Watchers(join(base, 'file', 'watch'))
    watchers.push(blocked)
    expect(await settled(blocked).stamp(root, [])).toBeUndefined()
  })

  it('names the paths moved since a kept stamp; none when some were forgotten, too many, or the watch was rebuilt', async () => {
    const { root, w, write } = setup()
    const first = (await w.stamp(root, ['node_modules']))!
    expect(first.paths).toBeUndefined()
    write('src/deep/a.txt', 'edited')
    write('src/b.txt', 'new')
    rmSync(join(root, 'src/b.txt'))
    write('node_modules/x/skipped.txt', 'not watched')
    const since = { id: first.id, seq: first.seq }
    const moved = (await w.stamp(root, ['node_modules'], since))!
    expect(moved.paths).toEqual(['src/b.txt', 'src/deep/a.txt'])
    // Nothing since the newest stamp: no path; a stamp of another watch: no names at all.
    expect((await w.stamp(root, ['node_modules'], { id: moved.id, seq: moved.seq }))?.paths).toEqual([])
    expect((await w.stamp(root, ['node_modules'], { id: 'other', seq: 0 }))?.paths).toBeUndefined()
    // More than 200 paths since the kept stamp: not named (git lists instead).
    for (let i = 0; i < 201; i++) write(`src/many-${i}.txt`, 'x')
    const many = (await w.stamp(root, ['node_modules'], since))!
    expect(many.seq).toBeGreaterThan(moved.seq)
    expect(many.paths).toBeUndefined()
    // More than the log holds: the oldest are forgotten, so an old stamp gets no names even for a few paths.
    for (let i = 0; i < 1100; i++) write(`src/many-${i}.txt`, 'y')
    const after = (await w.stamp(root, ['node_modules']))!
    write('src/deep/a.txt', 'again')
    expect((await w.stamp(root, ['node_modules'], { id: after.id, seq: after.seq }))?.paths).toEqual(['src/deep/a.txt'])
    expect((await w.stamp(root, ['node_modules'], { id: many.id, seq: many.seq }))?.paths).toBeUndefined()
    // A new folder rebuilds the watch under a new id: the kept stamp names nothing.
    mkdirSync(join(root, 'src/other'))
    const rebuilt = (await w.stamp(root, ['node_modules'], { id: after.id, seq: after.seq }))!
    expect(rebuilt.id).not.toBe(after.id)
    expect(rebuilt.paths).toBeUndefined()
  })
})
