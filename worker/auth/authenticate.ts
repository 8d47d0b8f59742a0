import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import type { Env } from '../env.js'
import { setting } from '../env.js'
import { accessConfigured, verifiedAccessEmail } from './access.js'
import type { Identity } from './identity.js'
import { identityProblem, sanitizeOrg } from './identity.js'
import { secretsEqual, verifyUserToken } from './tokens.js'

/** `Authorization: Bearer <token>`, scheme case-insensitive. */
export function bearerToken(request: Request): string | undefined {
  const header = request.headers.get('authorization')
  const match = header?.match(/^bearer ([^ ]+)$/i)
  return match?.[1]
}

/** 400 `invalid_identity` for an owner, org or login no header could carry or that is too long. */
function checkIdentity(fields: Record<string, string | null | undefined>): void {
  for (const [name, value] of Object.entries(fields)) {
    const problem = identityProblem(name, value)
    if (problem) throw new ApiError(400, ErrorCode.invalidIdentity, problem)
  }
}

/** A short, stable name for a secret (never the secret): per-credential caps count by it. */
async function secretId(secret: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(secret)))
  return Array.from(digest.slice(0, 12), (b) => b.toString(16).padStart(2, '0')).join('')
}

/**
 * The admin or shared token's identity. The admin token's operator may name anyone (a
 * verified identity). Under the shared token the owner is the Access email when Access is
 * configured (a valid JWT is then required: undefined = 401), else whatever
 * `X-Crabbox-Owner`/`-Org` claim: a claimed identity, its own namespace.
 */
async function tokenIdentity(request: Request, env: Env, isAdmin: boolean, token: string): Promise<Identity | undefined> {
  const email = await verifiedAccessEmail(request, env)
  if (!isAdmin && accessConfigured(env) && !email) return undefined
  const headerOwner = request.headers.get('x-crabbox-owner')
  const headerOrg = request.headers.get('x-crabbox-org')
  checkIdentity({ owner: email ?? headerOwner, org: headerOrg })
  const claimed = !isAdmin && !email
  const owner = email ?? (headerOwner?.trim() || 'unknown')
  return {
    owner,
    org: sanitizeOrg(headerOrg?.trim() ? headerOrg : setting(env, 'CRABBOX_DEFAULT_ORG')),
    auth: 'bearer',
    admin: isAdmin,
    claimed,
    credential: isAdmin ? '' : claimed ? `token:${await secretId(token)}` : `verified:${owner}`,
  }
}

/**
 * Evaluates the bearer credential, in this order: admin token, shared token,
 * then a signed user token. Undefined = unauthenticated. Throws 400
 * `invalid_identity` for an owner or org over 256 bytes or with a control character.
 */
export async function authenticate(request: Request, env: Env, now = Date.now()): Promise<Identity | undefined> {
  const token = bearerToken(request)
  if (!token) return undefined
  const admin = setting(env, 'CRABBOX_ADMIN_TOKEN')
  const shared = setting(env, 'CRABBOX_SHARED_TOKEN')
  // Compare against both so timing does not reveal which one matched.
  const [isAdmin, isShared] = await Promise.all([admin ? secretsEqual(token, admin) : false, shared ? secretsEqual(token, shared) : false])
  if (isAdmin || isShared) return tokenIdentity(request, env, isAdmin, token)
  return userTokenIdentity(token, env, now)
}

/**
 * The identity of a signed `cbxu_` user token (GitHub login), or undefined. The portal's
 * session cookie carries such a token, so a browser session is exactly this identity.
 */
export async function userTokenIdentity(token: string, env: Env, now = Date.now()): Promise<Identity | undefined> {
  // User tokens have their own key: never the shared token, so without a session secret none is valid.
  const secret = setting(env, 'CRABBOX_SESSION_SECRET')
  if (!secret) return undefined
  const payload = await verifyUserToken(token, secret, now)
  if (!payload) return undefined
  checkIdentity({ owner: payload.owner, org: payload.org, login: payload.login })
  // User tokens never carry admin rights, whatever the payload says (an `admin` claim in the payload is ignored).
  return {
    owner: payload.owner,
    org: sanitizeOrg(payload.org),
    auth: 'github',
    admin: false,
    githubLogin: payload.login,
    claimed: false,
    credential: `verified:${payload.owner}`,
  }
}
