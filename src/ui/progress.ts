import { color } from './colors.js'

/**
 * Progress for humans on stderr. On a TTY a single spinner line is redrawn per
 * phase; otherwise each phase is one plain line. Nothing ever goes to stdout.
 * Quiet mode (the default for most commands) prints only warnings.
 */
export interface Progress {
  phase(message: string): void
  info(message: string): void
  warn(message: string): void
  done(message?: string): void
}

const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']

export interface ProgressOptions {
  stream?: NodeJS.WriteStream
  quiet?: boolean
  /** Forces plain lines even on a TTY (tests, --json). */
  plain?: boolean
}

export function createProgress(options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr
  const tty = Boolean(stream.isTTY) && !options.plain && process.env.TERM !== 'dumb'
  let current: string | undefined
  let timer: NodeJS.Timeout | undefined
  let frame = 0

  const clear = () => {
    if (timer) clearInterval(timer)
    timer = undefined
    if (tty && current !== undefined) stream.write('\r\u001b[2K')
    current = undefined
  }
  const draw = () => {
    if (current === undefined) return
    stream.write(`\r\u001b[2K${color.cyan(frames[frame++ % frames.length])} ${current}`)
  }

  return {
    phase(message) {
      if (options.quiet) return
      if (!tty) {
        stream.write(`${message}\n`)
        return
      }
      current = message
      draw()
      timer ??= setInterval(draw, 80)
      timer.unref()
    },
    info(message) {
      if (options.quiet) return
      clear()
      stream.write(`${message}\n`)
    },
    warn(message) {
      clear()
      stream.write(`${color.yellow('warning:')} ${message}\n`)
    },
    done(message) {
      clear()
      if (message && !options.quiet) stream.write(`${message}\n`)
    },
  }
}
