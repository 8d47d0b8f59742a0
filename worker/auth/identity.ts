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
  /**
   * True for an owner and org named by `X-Crabbox-Owner`/`-Org` under the shared token:
   * a claimed identity. Claimed and verified identities (GitHub login, Access, the
   * admin token's operator) are separate namespaces that never match, whatever the names.
   */
  claimed: boolean
  /**
   * What the caller cannot choose: the shared token's hash, or the verified owner.
   * Per-credential lease caps count by it; empty for the admin token (never capped by it).
   */
  credential: string
}

export const IdentityHeader = {
  owner: 'x-crabbox-owner',
  org: 'x-crabbox-org',
  auth: 'x-crabbox-auth',
  admin: 'x-crabbox-admin',
  githubLogin: 'x-crabbox-github-login',
  claimed: 'x-crabbox-claimed',
  credential: 'x-crabbox-credential',
} as const

/** Owners and orgs longer than this (UTF-8 bytes) are refused at the edge. */
export const MAX_IDENTITY_BYTES = 256

/**
 * Why an identity field cannot be used (too long, or a control character such as CR/LF,
 * which no header can carry), else undefined. The edge answers 400 `invalid_identity`.
 */
export function identityProblem(name: string, value: string | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined
  if (new TextEncoder().encode(value).length > MAX_IDENTITY_BYTES) return `${name} is longer than ${MAX_IDENTITY_BYTES} bytes`
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this refuses
  if (/[\u0000-\u001f\u007f]/.test(value)) return `${name} contains a control character`
  return undefined
}

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
  headers[IdentityHeader.claimed] = identity.claimed ? 'true' : 'false'
  headers[IdentityHeader.credential] = identity.credential
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
    // Anything but an explicit 'false' from the edge is claimed: the narrower namespace.
    claimed: h.get(IdentityHeader.claimed) !== 'false',
    credential: h.get(IdentityHeader.credential) ?? '',
  }
  const login = h.get(IdentityHeader.githubLogin)
  if (login) identity.githubLogin = login
  return identity
}

export type LeaseRole = 'owner' | ShareRole

/**
 * Which namespace a stored lease or run belongs to rides on the record as a symbol:
 * the storage modules set it from their `claimed` column when they read a record, and
 * JSON (the stored record, the wire) never carries it. A record without it matches no one
 * but admins, so a read path that forgets the column fails closed.
 */
const CLAIMED_OWNER = Symbol('claimed owner')

/** Marks `record` as owned by a claimed (true) or verified (false) identity; returns it. */
export function withOwnerNamespace<T extends object>(record: T, claimed: boolean | number): T {
  ;(record as { [CLAIMED_OWNER]?: boolean })[CLAIMED_OWNER] = Boolean(claimed)
  return record
}

/** 1 when the record's owner is a claimed identity, 0 when verified (the `claimed` column). */
export const ownerClaimedColumn = (record: object): number => ((record as { [CLAIMED_OWNER]?: boolean })[CLAIMED_OWNER] ? 1 : 0)

const sameNamespace = (record: object, identity: Identity): boolean =>
  (record as { [CLAIMED_OWNER]?: boolean })[CLAIMED_OWNER] === identity.claimed

/**
 * The caller's role on a lease: owner (same owner and
 * org, or admin), else the stronger of the user share and the same-org share.
 * Undefined = not visible, which every route answers with the same 404 as missing.
 */
export function leaseRole(lease: { owner: string; org: string; share?: LeaseShare }, identity: Identity): LeaseRole | undefined {
  if (identity.admin) return 'owner'
  if (!sameNamespace(lease, identity)) return undefined
  if (lease.owner === identity.owner && lease.org === identity.org) return 'owner'
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

/** Runs are never shared: owner and org in the caller's namespace, or admin. */
export const canSeeOwned = (record: { owner: string; org: string }, identity: Identity): boolean =>
  identity.admin || (sameNamespace(record, identity) && record.owner === identity.owner && record.org === identity.org)
