import type { LeaseShare } from '../protocol/leases.js'

/** `crabbox share`: one line per grant (`user EMAIL ROLE`, `org ROLE`), or that nothing is shared. */
export function renderShare(leaseID: string, share: LeaseShare): string {
  const users = Object.entries(share.users ?? {}).sort(([a], [b]) => a.localeCompare(b))
  if (users.length === 0 && !share.org) return `${leaseID} is not shared\n`
  const lines = [`${leaseID} shared${share.updatedBy ? ` (last changed by ${share.updatedBy} at ${share.updatedAt ?? '?'})` : ''}`]
  for (const [user, role] of users) lines.push(`  user  ${user}  ${role}`)
  if (share.org) lines.push(`  org   ${share.org}`)
  return `${lines.join('\n')}\n`
}
