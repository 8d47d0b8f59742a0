import type { RunTiming } from '../services/run/timing.js'
import { color } from './colors.js'
import { shortPath } from './terminal.js'

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

/** `exit 0 · total 2.99s · sync 0.36s · command 2.08s`, green or red by exit code, for people on stderr. */
export function summaryLine(timing: RunTiming): string {
  const sync = `sync ${formatMs(timing.syncMs)}${timing.syncSkipped ? ' (skipped)' : ''}`
  const line = `exit ${timing.exitCode} · total ${formatMs(timing.totalMs)} · ${sync} · command ${formatMs(timing.commandMs)}`
  return timing.exitCode === 0 ? color.green(line) : color.red(line)
}

/** The phase a run's sync opens with; `home`: the command's own home folder, for `~`. */
export const syncingLine = (repoRoot: string, slug: string, home?: string) => `syncing ${shortPath(repoRoot, 40, home)} to ${slug}`

/** How a sync's phase ends when the runner already held the checkout. */
export const NOTHING_TO_SYNC = 'checkout unchanged, nothing to sync'

/** The line a run says as its command starts (not with --quiet or --timing-json). */
export const runningOnLine = (lease: { slug: string; ssh: { host: string } }, argv: string[]) =>
  `running on ${lease.slug} (${lease.ssh.host}) ${argv.join(' ')}`

/** `1 file`, `2 files`. */
export const plural = (count: number, one: string, many = `${one}s`) => `${count} ${count === 1 ? one : many}`

/** `a local runner`, `an ssh runner`, `an aws runner`: the article as the word is spoken. */
export const withArticle = (word: string) => `${/^(ssh|[aeiou])/i.test(word) ? 'an' : 'a'} ${word}`
