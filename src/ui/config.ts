import type { ConfigView } from '../services/config.js'

function flatten(value: unknown, prefix: string, out: Array<[string, string]>): void {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, child] of Object.entries(value)) flatten(child, prefix ? `${prefix}.${key}` : key, out)
  } else if (value !== undefined) {
    out.push([prefix, Array.isArray(value) ? (value.length ? value.join(',') : '[]') : String(value)])
  }
}

/** `key = value  (source)` lines, then the files read. */
export function renderConfigView(view: ConfigView): string {
  const rows: Array<[string, string]> = []
  flatten(view.config, '', rows)
  const width = Math.max(...rows.map(([key]) => key.length))
  const lines = rows.map(([key, value]) => {
    const source = view.sources[key] ?? (/^broker\.(token|adminToken|access)/.test(key) ? undefined : 'default')
    return `${key.padEnd(width)} = ${value}${source ? `  (${source})` : ''}`
  })
  lines.push(
    '',
    `user config: ${view.userConfig}`,
    `files read: ${view.files.length ? view.files.join(', ') : 'none'}`,
    `cloudflare access: ${view.accessAuth}`,
  )
  return `${lines.join('\n')}\n`
}
