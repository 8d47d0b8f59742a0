import type { RunTiming } from '../services/run/timing.js'

/** `2048` → `2 KiB`, `1_572_864` → `1.5 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`
}

/** `850` → `850ms`, `1234` → `1.23s`, `12345` → `12.3s`. */
export const formatMs = (ms: number): string => (ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`)

/** `run summary sync=… command=… total=… sync_skipped=… exit=…`, for humans on stderr. */
export function summaryLine(timing: RunTiming): string {
  return `run summary sync=${formatMs(timing.syncMs)} command=${formatMs(timing.commandMs)} total=${formatMs(timing.totalMs)} sync_skipped=${timing.syncSkipped} exit=${timing.exitCode}`
}

/** `1 file`, `2 files`. */
export const plural = (count: number, one: string, many = `${one}s`) => `${count} ${count === 1 ? one : many}`

/** `a local runner`, `an ssh runner`, `an aws runner`: the article as the word is spoken. */
export const withArticle = (word: string) => `${/^(ssh|[aeiou])/i.test(word) ? 'an' : 'a'} ${word}`
