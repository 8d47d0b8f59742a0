import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import xterm from '@xterm/headless'
import { afterAll, describe, expect, it } from 'vitest'
import { createProgress, type Progress } from '../../src/ui/progress.js'
import { until } from '../support/fixtures.js'

/** The live status line against real terminal emulators that re-wrap on a resize, driven step by step. */
interface Emulator {
  write(bytes: string): void
  /** Resolves once the emulator has taken in everything written so far. */
  settled(): Promise<void>
  resize(columns: number): Promise<void>
  /** Scrollback and screen, a line per printed line (rows the terminal wrapped joined), blank ones dropped. */
  lines(): string[]
  close(): void
}

const ROWS = 12
const cleanups: (() => void)[] = []
afterAll(() => cleanups.forEach((cleanup) => cleanup()))

/** tmux (as in CI and over ssh): re-wraps every line on a resize, the cursor's line included. */
function tmuxEmulator(columns: number): Emulator {
  const socket = `crabbox-reflow-${process.pid}`
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' })
  const dir = mkdtempSync(join(tmpdir(), 'crabbox-reflow-'))
  const fifo = join(dir, 'screen')
  execFileSync('mkfifo', [fifo])
  const name = `r${randomBytes(4).toString('hex')}`
  // The pane is `cat` of a fifo: what the test writes reaches the pty as a program's output, onlcr and all.
  tmux('new-session', '-d', '-s', name, '-x', String(columns), '-y', String(ROWS), `exec cat ${fifo}`)
  tmux('set-option', '-t', name, 'history-limit', '2000')
  const fd = openSync(fifo, 'w')
  let marks = 0
  const emulator: Emulator = {
    write: (bytes) => void writeSync(fd, bytes),
    async settled() {
      // A title change after the bytes: once tmux shows it, it has parsed everything before it.
      const mark = `mark-${++marks}`
      writeSync(fd, `\u001b]2;${mark}\u0007`)
      await until(
        'tmux to take the output in',
        () => tmux('display-message', '-p', '-t', name, '#{pane_title}').trim() === mark,
        10_000,
        10,
      )
    },
    async resize(width) {
      await emulator.settled()
      tmux('resize-window', '-t', name, '-x', String(width))
    },
    lines: () =>
      tmux('capture-pane', '-p', '-J', '-t', name, '-S', '-2000')
        .split('\n')
        .map((line) => line.trimEnd())
        .filter((line) => line !== ''),
    close() {
      tmux('kill-server')
      closeSync(fd)
      rmSync(dir, { recursive: true, force: true })
    },
  }
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return emulator
}

/** xterm.js (VS Code's terminal): re-wraps the lines above and cuts the cursor's line. */
function xtermEmulator(columns: number): Emulator {
  // convertEol: a pty turns each \n into \r\n (onlcr).
  const term = new xterm.Terminal({ cols: columns, rows: ROWS, allowProposedApi: true, convertEol: true })
  let parsed = Promise.resolve()
  return {
    write: (bytes) => void (parsed = parsed.then(() => new Promise<void>((resolve) => term.write(bytes, resolve)))),
    settled: () => parsed,
    async resize(width) {
      await parsed
      term.resize(width, ROWS)
    },
    lines() {
      const lines: string[] = []
      for (let row = 0; row < term.buffer.active.length; row++) {
        const line = term.buffer.active.getLine(row)
        const text = line?.translateToString(true) ?? ''
        if (line?.isWrapped && lines.length > 0) lines[lines.length - 1] += text
        else lines.push(text)
      }
      return lines.map((line) => line.trimEnd()).filter((line) => line !== '')
    },
    close: () => term.dispose(),
  }
}

/** A stderr on `emulator` whose window size the test sets, as the kernel reports it to the CLI. */
function ttyOn(emulator: Emulator, columns: number) {
  const stream = new Writable({
    write: (chunk: Buffer, _enc, done) => (emulator.write(chunk.toString()), done()),
  }) as unknown as NodeJS.WriteStream
  let width = columns
  stream.isTTY = true
  stream.getWindowSize = () => [width, ROWS]
  return {
    stream,
    /** The kernel's size changes and Node sees SIGWINCH. */
    signal(next: number) {
      width = next
      stream.emit('resize')
    },
  }
}

const SPINNER = /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/

const ABOVE = [
  'local provider: commands run on this machine as root, without isolation',
  '✓ leased cbx_0123456789ab (amber-crayfish, local) 0.7s',
]

/** The CLI's phases around a sync at 100 columns; `narrow` shrinks the window to 40 mid-transfer. */
async function syncThroughResize(emulator: Emulator, narrow: (progress: Progress, tty: ReturnType<typeof ttyOn>) => Promise<void>) {
  const tty = ttyOn(emulator, 100)
  const progress = createProgress({ stream: tty.stream, env: {} })
  for (const line of ABOVE) progress.info(line)
  progress.phase('sync: sending')
  progress.transfer({ bytes: 7 << 20, totalBytes: 96 << 20, files: 3, totalFiles: 49 })
  progress.phase('sync: sending')
  await narrow(progress, tty)
  await emulator.resize(70)
  tty.signal(70)
  progress.done('synced 49 files, 96.0 MiB')
  progress.info('after the resize')
  await emulator.settled()
  const lines = emulator.lines()
  emulator.close()
  expect(lines.join('\n')).not.toMatch(SPINNER)
  expect(lines).toEqual([...ABOVE, expect.stringMatching(/^✓ synced 49 files, 96\.0 MiB \d+\.\ds$/), 'after the resize'])
}

describe.each([
  ['tmux', tmuxEmulator],
  ['xterm.js', xtermEmulator],
])('the live line in %s', (_name, emulatorOf) => {
  it('a window narrowed then widened mid-transfer keeps the lines above and leaves no debris', async () => {
    const emulator = emulatorOf(100)
    await syncThroughResize(emulator, async (progress, tty) => {
      await emulator.resize(40)
      tty.signal(40)
      progress.transfer({ bytes: 9 << 20, totalBytes: 96 << 20, files: 4, totalFiles: 49 })
      progress.phase('sync: sending')
    })
  })

  it('a frame sized for the old width that reaches the terminal after it re-wrapped leaves no debris', async () => {
    const emulator = emulatorOf(100)
    await syncThroughResize(emulator, async (progress, tty) => {
      // What a loaded machine does by chance: the frame was in the pty's buffer when the window changed.
      await emulator.resize(40)
      progress.transfer({ bytes: 9 << 20, totalBytes: 96 << 20, files: 4, totalFiles: 49 })
      progress.phase('sync: sending')
      await emulator.settled()
      tty.signal(40)
    })
  })
})
