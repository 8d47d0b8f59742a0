import type { LeaseRecord } from '../protocol/leases.js'
import type { TailscaleMetadata } from '../protocol/tailscale.js'
import type { Lease } from '../providers/types.js'
import { networkOf } from './network.js'
import { durationText, type StatusView } from '../ui/status.js'

export type { StatusView } from '../ui/status.js'

export interface StatusViewOptions {
  /** The runner answered over SSH just now. */
  ready: boolean
  /** The configured target, for leases whose record does not say. */
  target: string
  now?: Date
}

const text = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : typeof value === 'number' && value !== 0 ? String(value) : undefined

/** The labels scripts read: the lease's own facts as text, plus the broker record's ownership and timing. */
function leaseLabels(lease: Lease, record: LeaseRecord | undefined, target: string): Record<string, string> {
  const labels: Record<string, string> = {
    crabbox: 'true',
    lease: lease.id,
    slug: lease.slug,
    provider: lease.provider,
    state: lease.state,
    keep: String(lease.keep),
    target,
  }
  const optional: Record<string, unknown> = {
    windows_mode: record?.windowsMode,
    owner: record?.owner,
    org: record?.org,
    profile: record?.profile,
    class: record?.class,
    server_type: lease.serverType,
    market: record?.market ?? lease.details.market,
    region: record?.region ?? lease.details.region,
    idle_timeout_secs: lease.idleTimeoutSeconds,
    ttl_secs: record?.ttlSeconds,
    created_at: record?.createdAt ?? lease.details.createdAt,
    last_touched_at: record?.lastTouchedAt,
    expires_at: lease.expiresAt,
  }
  for (const [key, value] of Object.entries(optional)) {
    const value_ = text(value)
    if (value_ !== undefined) labels[key] = value_
  }
  return labels
}

/** The provider's machine ID: the broker's cloud ID or server number, a direct machine's ID. */
function serverId(lease: Lease, record: LeaseRecord | undefined): string {
  if (record) return text(record.cloudID) ?? text(record.serverID) ?? ''
  return text(lease.details.machineId) ?? ''
}

/** The lease's Tailscale metadata (broker record, or a direct machine's labels); never holds a key. */
const tailscaleOf = (lease: Lease, record: LeaseRecord | undefined): TailscaleMetadata | undefined =>
  record?.tailscale ?? (lease.details.tailscale as TailscaleMetadata | undefined)

/** One lease as `status --json` and `inspect --json` show it (see `StatusView`). */
export function statusView(lease: Lease, options: StatusViewOptions): StatusView {
  const record = lease.details.record as LeaseRecord | undefined
  const now = options.now ?? new Date()
  const target = record?.target ?? options.target
  const touched = record ? Date.parse(record.lastTouchedAt) : Number.NaN
  const view: StatusView = {
    id: lease.id,
    ...(lease.slug ? { slug: lease.slug } : {}),
    provider: lease.provider,
    target,
    workroot: lease.workRoot,
    ...(record?.windowsMode ? { windowsMode: record.windowsMode } : {}),
    state: lease.state,
    serverId: serverId(lease, record),
    serverType: lease.serverType ?? '',
    host: (lease.details.publicHost as string | undefined) ?? lease.ssh.host,
    network: networkOf(lease)?.network ?? 'public',
    ...(networkOf(lease) ? { networkReason: networkOf(lease)!.reason } : {}),
    ...(tailscaleOf(lease, record) ? { tailscale: tailscaleOf(lease, record) } : {}),
    sshHost: lease.ssh.host,
    sshUser: lease.ssh.user,
    sshPort: String(lease.ssh.port),
    ...(lease.ssh.fallbackPorts.length ? { sshFallbackPorts: lease.ssh.fallbackPorts.map(String) } : {}),
    sshKey: lease.ssh.privateKeyPath,
    ...(record?.lastTouchedAt ? { lastTouchedAt: record.lastTouchedAt } : {}),
    ...(Number.isFinite(touched) && touched <= now.getTime() ? { idleFor: durationText(now.getTime() - touched) } : {}),
    ...(lease.idleTimeoutSeconds ? { idleTimeout: durationText(lease.idleTimeoutSeconds * 1000) } : {}),
    ...(lease.expiresAt ? { expiresAt: lease.expiresAt } : {}),
    labels: leaseLabels(lease, record, target),
    hasHost: lease.ssh.host !== '',
    ready: options.ready,
    ...(record?.telemetry ? { telemetry: record.telemetry } : {}),
    ...(record?.telemetryHistory?.length ? { telemetryHistory: record.telemetryHistory } : {}),
  }
  return view
}
