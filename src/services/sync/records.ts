import { MODE_EXEC, MODE_FILE, MODE_LINK } from './manifest.js'

/**
 * The runner's record of what crabbox put there: NUL-terminated records
 * `<hash> <octal mode> <path>`, read in order with later records winning.
 * A hash of `-` means "removed", `?` means "may be half-written, resend".
 */
export interface RemoteRecord {
  hash: string
  mode: number
}

export const REMOVED = '-'
export const UNKNOWN = '?'

export const encodeRecord = (hash: string, mode: number, path: string) => `${hash} ${mode.toString(8)} ${path}\0`

const modes = new Set<number>([MODE_FILE, MODE_EXEC, MODE_LINK])

/** Parses base + appended records; an unterminated last record (interrupted append) is ignored. */
export function parseRecords(data: Buffer | string): Map<string, RemoteRecord> {
  const text = typeof data === 'string' ? data : data.toString('utf8')
  const out = new Map<string, RemoteRecord>()
  let start = 0
  for (let end = text.indexOf('\0'); end !== -1; start = end + 1, end = text.indexOf('\0', start)) {
    const first = text.indexOf(' ', start)
    const second = first === -1 ? -1 : text.indexOf(' ', first + 1)
    if (second === -1 || second >= end) continue
    const hash = text.slice(start, first)
    const mode = Number.parseInt(text.slice(first + 1, second), 8)
    const path = text.slice(second + 1, end)
    if (hash === REMOVED) out.delete(path)
    else if (modes.has(mode)) out.set(path, { hash, mode })
  }
  return out
}
