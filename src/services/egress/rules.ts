/**
 * What the host side lets through: built-in profiles and `--allow` entries. An entry is a host
 * name (`discord.com`: that host only) or a wildcard (`*.discord.com`: discord.com and every
 * subdomain); a bare `*` is refused, so egress is never an open proxy. Pure, shared by the CLI
 * and its tests.
 */

export const EGRESS_PROFILES: Readonly<Record<string, readonly string[]>> = {
  discord: [
    'discord.com',
    '*.discord.com',
    'discordcdn.com',
    '*.discordcdn.com',
    'discord.gg',
    '*.discord.gg',
    'hcaptcha.com',
    '*.hcaptcha.com',
  ],
  slack: ['slack.com', '*.slack.com', 'slack-edge.com', '*.slack-edge.com', 'slack-imgs.com', '*.slack-imgs.com'],
}

export const DEFAULT_EGRESS_LISTEN = '127.0.0.1:3128'

export class EgressRuleError extends Error {
  override name = 'EgressRuleError'
}

const HOST_PATTERN = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/

/** The allow-list for a profile and/or `--allow` CSV: lowercased, deduplicated; refuses bad or open entries. */
export function allowList(profile: string | undefined, allow: string | undefined): string[] {
  const entries: string[] = []
  if (profile) {
    const listed = EGRESS_PROFILES[profile]
    if (!listed) throw new EgressRuleError(`unknown egress profile ${profile}; known: ${Object.keys(EGRESS_PROFILES).join(', ')}`)
    entries.push(...listed)
  }
  for (const raw of (allow ?? '').split(',')) {
    const entry = raw.trim().toLowerCase().replace(/\.$/, '')
    if (!entry) continue
    if (entry === '*' || entry === '*.')
      throw new EgressRuleError('a bare * would make egress an open proxy; name the hosts (*.example.com)')
    if (!HOST_PATTERN.test(entry) || entry.length > 253) throw new EgressRuleError(`not a host name or *.host wildcard: ${raw.trim()}`)
    entries.push(entry)
  }
  const unique = [...new Set(entries)]
  if (!unique.length) throw new EgressRuleError('egress needs --profile or --allow: it never runs as an open proxy')
  return unique
}

/** Whether `host` is allowed: an exact entry, or `*.x` matching x and its subdomains. */
export function allowed(host: string, list: readonly string[]): boolean {
  const name = host.trim().toLowerCase().replace(/\.$/, '')
  return list.some((entry) => {
    if (!entry.startsWith('*.')) return name === entry
    const base = entry.slice(2)
    return name === base || name.endsWith(`.${base}`)
  })
}

/** `host:port` (IPv6 in brackets) as CONNECT sends it; undefined when malformed. */
export function parseHostPort(value: string): { host: string; port: number } | undefined {
  const match = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(value) ?? /^([^:\s/]+):(\d{1,5})$/.exec(value)
  if (!match) return undefined
  const port = Number(match[2])
  if (port < 1 || port > 65535) return undefined
  return { host: match[1]!, port }
}

/** The client's listen address: loopback only (the proxy must not be reachable from outside the lease). */
export function loopbackListen(value: string | undefined): { host: string; port: number } {
  const parsed =
    parseHostPort(value ?? DEFAULT_EGRESS_LISTEN) ?? (/^\d+$/.test(value ?? '') ? { host: '127.0.0.1', port: Number(value) } : undefined)
  if (!parsed) throw new EgressRuleError(`--listen must be host:port on loopback, e.g. ${DEFAULT_EGRESS_LISTEN}`)
  if (!['127.0.0.1', 'localhost', '::1'].includes(parsed.host) && !parsed.host.startsWith('127.')) {
    throw new EgressRuleError(`--listen ${value} is not a loopback address: the egress proxy listens on loopback only`)
  }
  return parsed
}
