import { color } from './colors.js'
import { bar, displayWidth, eta, truncate } from './terminal.js'

/** Bytes and files of a measurable phase so far (a sync transfer). */
export interface TransferProgress {
  bytes: number
  totalBytes: number
  files: number
  totalFiles: number
}

/**
 * Progress for people, on stderr; nothing ever goes to stdout.
 *
 * A phase starts with its first `phase()` and ends with `done()`. On a
 * terminal one live status line (spinner, message, elapsed time or a transfer
 * bar) is redrawn in place, always cut to the terminal width, and erased when
 * the phase ends; a finished phase leaves one `✓ message 0.4s` line. Not on a
 * terminal every phase start and end is one plain timestamped line (notices
 * and warnings are printed as they are); on GitHub
 * Actions each phase is a `::group::`. `quiet` keeps only warnings.
 */
export interface Progress {
  /** The current phase's status (opens a phase when none is open). */
  phase(message: string): void
  /** Measurable work in the current phase: a bar with rate and ETA on a terminal. */
  transfer(update: TransferProgress): void
  /** A line that stays. */
  info(message: string): void
  /** A line for logs only: dropped on a terminal, where the screen stays calm. */
  detail(message: string): void
  warn(message: string): void
  /** Ends the current phase; with a message, leaves `✓ message <duration>`. */
  done(message?: string): void
  /** Ends the current phase as failed (`✗ <its status> <duration>`); nothing when no phase is open. */
  fail(): void
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream
  quiet?: boolean
  /** Forces plain lines even on a TTY (--json). */
  plain?: boolean
  env?: NodeJS.ProcessEnv
}

const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']

/** `0.4s`, `12s`, `2m05s`. */
export function formatDuration(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.round(ms / 1000)
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
}

const units = ['B', 'KiB', 'MiB', 'GiB']
const size = (bytes: number) => {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 || value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`
}

/** ` 42% 12.0 MiB/30.1 MiB 8.1 MiB/s ETA 3s 120/300 files`, the bar in front when there is room. */
export function transferText(update: TransferProgress, elapsedMs: number, room: number): string {
  const measured = update.totalBytes > 0 ? update.bytes / update.totalBytes : update.totalFiles > 0 ? update.files / update.totalFiles : 0
  const fraction = Math.min(1, measured)
  const { rate, seconds } = eta(update.bytes, update.totalBytes, elapsedMs)
  const parts = [
    `${String(Math.floor(fraction * 100)).padStart(3)}%`,
    `${size(update.bytes)}/${size(update.totalBytes)}`,
    `${size(rate)}/s`,
    seconds === undefined ? '' : `ETA ${seconds < 60 ? `${seconds}s` : formatDuration(seconds * 1000)}`,
    update.totalFiles > 0 ? `${update.files}/${update.totalFiles} files` : '',
  ].filter(Boolean)
  let text = parts.join(' ')
  // Detail goes from the right until a bar of 10 cells fits beside it (percent and bytes stay), then until the text fits.
  while (parts.length > 2 && displayWidth(text) + 11 > room) text = (parts.pop(), parts.join(' '))
  while (parts.length > 1 && displayWidth(text) > room) text = (parts.pop(), parts.join(' '))
  const cells = Math.min(30, room - displayWidth(text) - 1)
  return cells >= 10 ? `${bar(fraction, cells)} ${text}` : text
}

export function createProgress(options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr
  const env = options.env ?? process.env
  const tty = Boolean(stream.isTTY) && !options.plain && env.TERM !== 'dumb'
  if (options.quiet) return quietProgress(stream)
  return tty ? liveProgress(stream) : plainProgress(stream, env.CI === 'true' && env.GITHUB_ACTIONS === 'true')
}

function quietProgress(stream: NodeJS.WritableStream): Progress {
  const nothing = () => {}
  return {
    phase: nothing,
    transfer: nothing,
    info: nothing,
    detail: nothing,
    done: nothing,
    fail: nothing,
    warn: (message) => void stream.write(`${color.yellow('warning:')} ${message}\n`),
  }
}

/** Logs: `12:00:01 message`, one line per phase start and end, notices as they are, no control characters; GitHub Actions groups. */
function plainProgress(stream: NodeJS.WritableStream, github: boolean): Progress {
  let current: string | undefined
  let startedAt = 0
  let grouped = false
  const line = (text: string) => stream.write(`${new Date().toTimeString().slice(0, 8)} ${text}\n`)
  const end = (text: string | undefined) => {
    if (text) line(`${text} ${formatDuration(performance.now() - startedAt)}`)
    if (grouped) stream.write('::endgroup::\n')
    grouped = false
    current = undefined
  }
  return {
    phase(message) {
      if (current === undefined) {
        startedAt = performance.now()
        if (github) stream.write(`::group::${message}\n`)
        grouped = github
      }
      if (message !== current) line(message)
      current = message
    },
    transfer() {},
    // Notices are not phases: as they are, so a line another program waits for (`broker ready url=…`) keeps its shape.
    info: (message) => void stream.write(`${message}\n`),
    detail: (message) => void stream.write(`${message}\n`),
    warn: (message) => void stream.write(`warning: ${message}\n`),
    done(message) {
      end(message && (current === undefined ? message : `✓ ${message}`))
    },
    fail() {
      if (current !== undefined) end(`✗ ${current}`)
    },
  }
}

/**
 * The terminal's width now. `stream.columns` changes only once Node has handled SIGWINCH, which
 * under load can be after a redraw: the terminal has already re-wrapped the line, and a redraw
 * sized for the old width leaves rows behind. The ioctl answers at once.
 */
function liveColumns(stream: NodeJS.WriteStream): number | undefined {
  try {
    return stream.getWindowSize?.()[0] ?? stream.columns
  } catch {
    return stream.columns
  }
}

/**
 * The terminal: one live line, redrawn in place and never wider than the terminal.
 *
 * The cursor rests at the start of the line, so erasing is "clear from here down" and needs no
 * count of rows: a terminal that re-wraps on a resize (tmux, VTE, Windows Terminal) keeps the
 * cursor at the start of the re-wrapped line. A frame sized for the old width can still reach the
 * terminal after it re-wrapped (it was in the pty's buffer), so the line is written with
 * autowrap off: too wide, it is cut at the margin instead of spilling onto rows below.
 */
function liveProgress(stream: NodeJS.WriteStream): Progress {
  let current: string | undefined
  let update: TransferProgress | undefined
  let startedAt = 0
  let transferAt = 0
  let timer: NodeJS.Timeout | undefined
  let frame = 0
  let shown = false
  const columns = () => Math.max(liveColumns(stream) || 80, 10)

  // The line, then the rows below it. Not one "clear to the end of the screen": from the top-left
  // corner tmux takes that for a cleared screen and scrolls it into the history instead.
  const ERASE = '\r\u001b[K\u001b7\u001b[1B\u001b[J\u001b8'
  const erase = () => {
    if (shown) stream.write(ERASE)
    shown = false
  }
  const draw = () => {
    if (current === undefined) return
    // The spinner and a space, then the status; the last column stays free.
    const room = columns() - 3
    const elapsed = performance.now() - startedAt
    // A transfer gives the bar the room: the status keeps at most 24 columns beside it.
    const tail = update
      ? transferText(update, performance.now() - transferAt, Math.max(room - Math.min(displayWidth(current), 24) - 1, 10))
      : formatDuration(elapsed)
    const head = truncate(current, Math.max(room - displayWidth(tail) - 1, 8))
    const text = truncate(`${head} ${tail}`, room)
    // Autowrap goes back on in the same write, so an exit between frames leaves the terminal as it was.
    stream.write(`${shown ? ERASE : ''}\u001b[?7l${color.cyan(frames[frame++ % frames.length])} ${text}\u001b[?7h\r`)
    shown = true
  }
  const onResize = () => draw()
  const stop = () => {
    if (timer) clearInterval(timer)
    timer = undefined
    stream.off('resize', onResize)
    erase()
  }
  const end = (line: string | undefined) => {
    const took = formatDuration(performance.now() - startedAt)
    stop()
    if (line) stream.write(`${line} ${color.dim(took)}\n`)
    current = undefined
    update = undefined
  }
  return {
    phase(message) {
      if (current === undefined) {
        startedAt = performance.now()
        stream.on('resize', onResize)
        timer = setInterval(draw, 80)
        timer.unref()
      }
      if (message !== current) update = undefined
      current = message
      draw()
    },
    transfer(next) {
      if (current === undefined) return
      if (!update) transferAt = performance.now()
      update = next
    },
    info(message) {
      erase()
      stream.write(`${message}\n`)
      draw()
    },
    detail() {},
    warn(message) {
      erase()
      stream.write(`${color.yellow('warning:')} ${message}\n`)
      draw()
    },
    done(message) {
      if (current === undefined) {
        if (message) stream.write(`${message}\n`)
        return
      }
      end(message && `${color.green('✓')} ${message}`)
    },
    fail() {
      if (current !== undefined) end(`${color.red('✗')} ${current}`)
    },
  }
}
