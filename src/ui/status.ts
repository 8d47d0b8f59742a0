import type { LeaseTelemetry } from '../protocol/leases.js'
import type { TailscaleMetadata } from '../protocol/tailscale.js'

/**
 * What `status --json` and `inspect --json` print: one shape for both, with the
 * field names and types scripts written for crabbox read. Durations (`idleFor`,
 * `idleTimeout`) are text like `1h2m3s`; ports are strings, as in lease records.
 * Optional fields are left out when unknown.
 */
export interface StatusView {
  id: string
  slug?: string
  provider: string
  /** `linux`, `macos` or `windows`. */
  target: string
  /** The folder on the runner that holds the synced checkouts. */
  workroot?: string
  /** `normal` or `wsl2`, Windows targets only. */
  windowsMode?: string
  state: string
  /** The provider's machine ID (cloud ID, Hetzner server number); empty when there is none. */
  serverId: string
  serverType: string
  /** The runner's address. */
  host: string
  /** How the CLI reaches the runner: `public` (its address) or `tailscale`. */
  network: string
  /** Why that network (`requested`, `tailnet_fqdn`, `tailnet_ipv4`, `tailnet_hostname`, `no_tailnet_address`, `tailscale_unreachable`). */
  networkReason?: string
  /** The lease's Tailscale metadata, when it asked to join a tailnet (never the auth key). */
  tailscale?: TailscaleMetadata
  sshHost: string
  sshUser: string
  sshPort: string
  sshFallbackPorts?: string[]
  /** The private key crabbox connects with. */
  sshKey: string
  lastTouchedAt?: string
  /** Time since the last heartbeat, e.g. `4m12s`. */
  idleFor?: string
  /** Release after this long without a heartbeat, e.g. `30m0s`. */
  idleTimeout?: string
  expiresAt?: string
  /** The lease's labels (`lease`, `slug`, `state`, `keep`, `owner` …), all text. */
  labels?: Record<string, string>
  hasHost: boolean
  /** The runner answered over SSH just now. */
  ready: boolean
  telemetry?: LeaseTelemetry
  telemetryHistory?: LeaseTelemetry[]
}

/**
 * Milliseconds as a duration the way scripts for crabbox expect it: `45s`,
 * `30m0s`, `1h2m3s` (whole seconds; `0s` for nothing).
 */
export function durationText(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000))
  const hours = Math.floor(total / 3600)
  const minutes = Math.floor((total % 3600) / 60)
  const seconds = total % 60
  if (hours > 0) return `${hours}h${minutes}m${seconds}s`
  if (minutes > 0) return `${minutes}m${seconds}s`
  return `${seconds}s`
}

const dash = (value: string | undefined) => (value === undefined || value === '' ? '-' : value)

/** `status` for people: one line. */
export function statusLine(view: StatusView): string {
  return [
    view.id,
    `slug=${dash(view.slug)}`,
    `provider=${view.provider}`,
    `target=${view.target}`,
    `state=${view.state}`,
    `type=${dash(view.serverType)}`,
    `host=${dash(view.host)}`,
    `network=${view.network}`,
    ...(view.networkReason ? [`network_reason=${view.networkReason}`] : []),
    ...(view.tailscale?.ipv4 ? [`tailscale=${view.tailscale.fqdn || view.tailscale.ipv4}`] : []),
    `ready=${view.ready}`,
    `has_host=${view.hasHost}`,
    `idle_for=${dash(view.idleFor)}`,
    `idle_timeout=${dash(view.idleTimeout)}`,
    `expires=${dash(view.expiresAt)}`,
  ].join(' ')
}

const telemetryKeys = [
  'capturedAt',
  'source',
  'load1',
  'load5',
  'load15',
  'memoryPercent',
  'memoryUsedBytes',
  'memoryTotalBytes',
  'diskPercent',
  'diskUsedBytes',
  'diskTotalBytes',
  'uptimeSeconds',
] as const

const snake = (key: string) => key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)

/**
 * `inspect` for people: `key=value` lines, every field of the view (labels as
 * `label.<name>=`, the latest telemetry as `telemetry.<metric>=`). Values are
 * printed as they are; a value with a space or a newline is JSON-quoted.
 */
export function inspectLines(view: StatusView): string[] {
  const text = (value: string) => (/[\s"]/.test(value) || value === '' ? JSON.stringify(value) : value)
  const lines: string[] = []
  const add = (key: string, value: string | number | boolean | undefined) => {
    if (value !== undefined) lines.push(`${key}=${typeof value === 'string' ? text(value) : String(value)}`)
  }
  add('id', view.id)
  add('slug', view.slug)
  add('provider', view.provider)
  add('target', view.target)
  add('windows_mode', view.windowsMode)
  add('state', view.state)
  add('server_id', view.serverId)
  add('server_type', view.serverType)
  add('host', view.host)
  add('network', view.network)
  add('network_reason', view.networkReason)
  const tailscale = view.tailscale
  if (tailscale) {
    add('tailscale.enabled', tailscale.enabled)
    add('tailscale.state', tailscale.state)
    add('tailscale.hostname', tailscale.hostname)
    add('tailscale.fqdn', tailscale.fqdn)
    add('tailscale.ipv4', tailscale.ipv4)
    add('tailscale.tags', tailscale.tags?.join(','))
    add('tailscale.exit_node', tailscale.exitNode)
    add('tailscale.exit_node_allow_lan_access', tailscale.exitNode ? tailscale.exitNodeAllowLanAccess : undefined)
    add('tailscale.error', tailscale.error)
  }
  add('workroot', view.workroot)
  add('ssh_host', view.sshHost)
  add('ssh_user', view.sshUser)
  add('ssh_port', view.sshPort)
  add('ssh_fallback_ports', view.sshFallbackPorts?.join(','))
  add('ssh_key', view.sshKey)
  add('last_touched_at', view.lastTouchedAt)
  add('idle_for', view.idleFor)
  add('idle_timeout', view.idleTimeout)
  add('expires_at', view.expiresAt)
  add('has_host', view.hasHost)
  add('ready', view.ready)
  for (const [name, value] of Object.entries(view.labels ?? {}).sort(([a], [b]) => a.localeCompare(b))) add(`label.${name}`, value)
  for (const key of telemetryKeys) add(`telemetry.${snake(key)}`, view.telemetry?.[key])
  if (view.telemetryHistory?.length) add('telemetry_samples', view.telemetryHistory.length)
  return lines
}
