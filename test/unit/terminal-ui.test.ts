import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createProgress, transferText } from '../../src/ui/progress.js'
import { displayWidth, shortPath, truncate } from '../../src/ui/terminal.js'

const sink = (tty: boolean, columns = 80) => {
  let text = ''
  const stream = new Writable({ write: (chunk, _enc, done) => ((text += chunk), done()) }) as unknown as NodeJS.WriteStream
  stream.isTTY = tty
  stream.columns = columns
  return { stream, text: () => text }
}

describe('terminal text', () => {
  it('truncates to a width, counting wide characters twice', () => {
    expect(truncate('abcdef', 4)).toBe('abc…')
    expect(truncate('abc', 4)).toBe('abc')
    expect(displayWidth('日本')).toBe(4)
    expect(displayWidth(truncate('日本語のパス', 7))).toBeLessThanOrEqual(7)
  })

  it('shortens paths from the middle, home as ~', () => {
    expect(shortPath('/home/ann/src/app', 40, '/home/ann')).toBe('~/src/app')
    const short = shortPath('/tmp/a-very-long-folder-name/another-long-folder/and-the-leaf', 30)
    expect(displayWidth(short)).toBe(30)
    expect(short.startsWith('/tmp/')).toBe(true)
    expect(short.endsWith('and-the-leaf')).toBe(true)
  })

  it('shows a transfer with percent, bytes, rate, ETA and files, the bar only when there is room', () => {
    const update = { bytes: 50 * 1024 * 1024, totalBytes: 100 * 1024 * 1024, files: 10, totalFiles: 20 }
    const wide = transferText(update, 5000, 100)
    expect(wide).toMatch(/█+░+ {2}50% 50\.0 MiB\/100 MiB 10\.0 MiB\/s ETA 5s 10\/20 files/)
    const narrow = transferText(update, 5000, 20)
    expect(displayWidth(narrow)).toBeLessThanOrEqual(20)
    expect(narrow).toContain('50%')
  })
})

describe('progress', () => {
  it('never draws a live line wider than the terminal', () => {
    const out = sink(true, 30)
    const progress = createProgress({ stream: out.stream, env: {} })
    progress.phase(`syncing ${'/very/long/path'.repeat(10)}`)
    progress.done()
    // Each frame is written between autowrap off and on.
    const frames = out.text().split('\u001b[?7l').slice(1)
    expect(frames.length).toBeGreaterThan(0)
    for (const frame of frames) expect(displayWidth(frame.slice(0, frame.indexOf('\u001b[?7h')))).toBeLessThan(30)
  })

  it('prints nothing but warnings with quiet', () => {
    const out = sink(true)
    const progress = createProgress({ stream: out.stream, quiet: true, env: {} })
    progress.phase('leasing')
    progress.info('notice')
    progress.done('leased')
    progress.warn('slow')
    expect(out.text()).toBe('warning: slow\n')
  })

  it('groups phases on GitHub Actions and leaves no control characters', () => {
    const out = sink(false)
    const progress = createProgress({ stream: out.stream, env: { CI: 'true', GITHUB_ACTIONS: 'true' } })
    progress.phase('leasing a local runner')
    progress.phase('waiting for SSH')
    progress.done('leased x')
    progress.phase('syncing')
    progress.fail()
    const lines = out.text().split('\n')
    expect(lines[0]).toBe('::group::leasing a local runner')
    expect(lines).toContain('::endgroup::')
    expect(out.text()).toMatch(/✓ leased x \d+\.\ds\n::endgroup::\n::group::syncing\n/)
    expect(out.text()).toMatch(/✗ syncing \d+\.\ds\n::endgroup::\n$/)
    // eslint-disable-next-line no-control-regex -- asserting there are none
    expect(out.text()).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/)
  })
})
