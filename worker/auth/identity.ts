import type { LeaseShare, ShareRole } from '../../src/protocol/leases.js'

/**
 * The caller as the Durable Object sees it. The edge (worker/index.ts) strips
 * whatever identity headers the caller sent and sets these from the verified
 * credential; inside the object, `identityFrom(request)` is the only reader.
 */
export interface Identity {
  owner: string
  org: string
  auth: 'bearer' | 'github'
  admin: boolean
  githubLogin?: string
}

export const IdentityHeader = {
  owner: 'x-crabbox-owner',
  org: 'x-crabbox-org',
  auth: 'x-crabbox-auth',
  admin: 'x-crabbox-admin',
  githubLogin: 'x-crabbox-github-login',
} as const

/** Headers a caller may not set themselves: ours, plus raw Access headers we never trust. */
export const STRIPPED_HEADERS = [...Object.values(IdentityHeader), 'cf-access-authenticated-user-email', 'cf-access-jwt-assertion']

/** Org names are sanitized to `[a-zA-Z0-9_.@-]`, ≤ 63 chars. */
export function sanitizeOrg(org: string | undefined): string {
  const cleaned = (org ?? '')
    .trim()
    .replace(/[^a-zA-Z0-9_.@-]/g, '_')
    .slice(0, 63)
  return cleaned || 'unknown'
}

export function identityHeaders(identity: Identity): Record<string, string> {
  const headers: Record<string, string> = {
    [IdentityHeader.owner]: identity.owner,
    [IdentityHeader.org]: identity.org,
    [IdentityHeader.auth]: identity.auth,
    [IdentityHeader.admin]: identity.admin ? 'true' : 'false',
  }
  if (identity.githubLogin) headers[IdentityHeader.githubLogin] = identity.githubLogin
  return headers
}

/** Reads the identity the edge forwarded. */
export function identityFrom(request: Request): Identity {
  const h = request.headers
  const identity: Identity = {
    owner: h.get(IdentityHeader.owner) || 'unknown',
    org: sanitizeOrg(h.get(IdentityHeader.org) ?? undefined),
    auth: h.get(IdentityHeader.auth) === 'github' ? 'github' : 'bearer',
    admin: h.get(IdentityHeader.admin) === 'true',
  }
  const login = h.get(IdentityHeader.githubLogin)
  if (login) identity.githubLogin = login
  return identity
}

export type LeaseRole = 'owner' | ShareRole

/**
 * The caller's role on a lease: owner (same owner and
 * org, or admin), else the stronger of the user share and the same-org share.
 * Undefined = not visible, which every route answers with the same 404 as missing.
 */
export function leaseRole(lease: { owner: string; org: string; share?: LeaseShare }, identity: Identity): LeaseRole | undefined {
  if (identity.admin || (lease.owner === identity.owner && lease.org === identity.org)) return 'owner'
  const userRole = lease.share?.users?.[identity.owner.trim().toLowerCase()]
  const orgRole = lease.org === identity.org ? lease.share?.org : undefined
  if (userRole === 'manage' || orgRole === 'manage') return 'manage'
  if (userRole === 'use' || orgRole === 'use') return 'use'
  return undefined
}

export const canSeeLease = (lease: Parameters<typeof leaseRole>[0], identity: Identity): boolean => leaseRole(lease, identity) !== undefined
export const canManageLease = (lease: Parameters<typeof leaseRole>[0], identity: Identity): boolean => {
  const role = leaseRole(lease, identity)
  return role === 'owner' || role === 'manage'
}

/** Runs are never shared: owner and org, or admin. */
export const canSeeOwned = (record: { owner: string; org: string }, identity: Identity): boolean =>
  identity.admin || (record.owner === identity.owner && record.org === identity.org)
