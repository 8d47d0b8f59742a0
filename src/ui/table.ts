/** Rendering of lists for people: a header and aligned columns on a terminal. */

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

/** A header row and columns padded to their widest cell (the last column is left ragged). */
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column])))
      .join('  ')
      .trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}
