import { homedir } from 'node:os'

/**
 * Small text helpers for the live status line: display width, truncation to
 * the terminal width, paths shortened from the middle. Hand-written on
 * purpose: the width libraries cost more start-up than the status line is worth.
 */

// East Asian wide and fullwidth ranges and the emoji planes take two columns; combining marks and zero-width characters none.
const WIDE: [number, number][] = [
  [0x1100, 0x115f],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe30, 0xfe4f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x1f300, 0x1f64f],
  [0x1f900, 0x1f9ff],
  [0x20000, 0x3fffd],
]
const ZERO: [number, number][] = [
  [0x0300, 0x036f],
  [0x200b, 0x200f],
  [0xfe00, 0xfe0f],
]
const within = (code: number, ranges: [number, number][]) => ranges.some(([low, high]) => code >= low && code <= high)

const columnsOf = (char: string): number => {
  const code = char.codePointAt(0)!
  return code < 0x300 ? 1 : within(code, ZERO) ? 0 : within(code, WIDE) ? 2 : 1
}

/** Columns `text` takes on a terminal (no escape codes expected). */
export function displayWidth(text: string): number {
  let width = 0
  for (const char of text) width += columnsOf(char)
  return width
}

/** `text` cut to at most `max` columns, ending in `…` when cut. */
export function truncate(text: string, max: number): string {
  if (max <= 0) return ''
  if (displayWidth(text) <= max) return text
  let out = ''
  let width = 0
  for (const char of text) {
    const w = columnsOf(char)
    if (width + w > max - 1) break
    out += char
    width += w
  }
  return `${out}…`
}

/** The home folder as `~`. */
export function tildify(path: string, home = homedir()): string {
  if (!home || home === '/') return path
  return path === home ? '~' : path.startsWith(`${home}/`) ? `~${path.slice(home.length)}` : path
}

/** `~/a/very/long/…/leaf/name` within `max` columns: home as `~`, cut from the middle, the ends kept. */
export function shortPath(path: string, max = 40, home?: string): string {
  const short = tildify(path, home)
  if (displayWidth(short) <= max || max < 5) return short
  const chars = [...short]
  const tail = Math.ceil((max - 1) / 2)
  const head = max - 1 - tail
  return `${chars.slice(0, head).join('')}…${chars.slice(chars.length - tail).join('')}`
}

/** `12.3 MiB/s`-style rate and `ETA 3s` from bytes done, total and elapsed ms. */
export function eta(done: number, total: number, elapsedMs: number): { rate: number; seconds?: number } {
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0
  return { rate, seconds: rate > 0 && total > done ? Math.ceil((total - done) / rate) : undefined }
}

/** `[#####-----]` for a fraction, `width` cells between the brackets. */
export function bar(fraction: number, width: number): string {
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)))
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`
}
