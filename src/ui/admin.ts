import type { LeaseRecord } from '../protocol/leases.js'
import { renderTable } from './table.js'

/** `crabbox admin leases`: one row per lease, newest first as the broker sends them. */
export function renderAdminLeases(leases: readonly LeaseRecord[]): string {
  if (leases.length === 0) return 'no leases\n'
  const rows = leases.map((l) => [
    l.id,
    l.slug,
    l.owner,
    l.org,
    l.provider,
    l.state,
    l.host ? `${l.sshUser ?? '?'}@${l.host}:${l.sshPort ?? '22'}` : '-',
    l.keep ? 'keep' : '-',
    l.expiresAt,
  ])
  return `${renderTable(['ID', 'SLUG', 'OWNER', 'ORG', 'PROVIDER', 'STATE', 'SSH', 'KEEP', 'EXPIRES'], rows).join('\n')}\n`
}

/** `admin release` / `admin delete`: what happened to the lease. */
export function renderAdminAction(verb: string, lease: LeaseRecord): string {
  return `${verb} ${lease.id} (${lease.slug}) owner=${lease.owner} state=${lease.state}\n`
}
