/** Rendering of lists for people: a header and aligned columns, relative times. */

/** `in 1h 29m`, `3m ago`, `just now`: an ISO time relative to `now`. Unparseable input comes back as it was. */
export function relativeTime(iso: string, now = Date.now()): string {
  const at = Date.parse(iso)
  if (Number.isNaN(at)) return iso
  const delta = at - now
  const abs = Math.abs(delta)
  if (abs < 10_000) return 'just now'
  const minutes = Math.floor(abs / 60_000)
  const hours = Math.floor(minutes / 60)
  const days = Math.floor(hours / 24)
  const span =
    days > 0
      ? `${days}d${hours % 24 ? ` ${hours % 24}h` : ''}`
      : hours > 0
        ? `${hours}h${minutes % 60 ? ` ${minutes % 60}m` : ''}`
        : minutes > 0
          ? `${minutes}m`
          : `${Math.floor(abs / 1000)}s`
  return delta > 0 ? `in ${span}` : `${span} ago`
}

/** Column alignment: text left, numbers and money right. */
export type Align = 'left' | 'right'

/**
 * A plain-text table: a header row and aligned columns separated by two spaces,
 * no trailing blanks. Cells are shown as given.
 */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[] = []): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (align[i] === 'right' ? cell.padStart(widths[i]) : i === cells.length - 1 ? cell : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd()
  return [line(headers), ...rows.map(line)]
}
