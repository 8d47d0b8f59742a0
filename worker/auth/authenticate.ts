import type { Env } from '../env.js'
import { setting } from '../env.js'
import { verifiedAccessEmail } from './access.js'
import type { Identity } from './identity.js'
import { sanitizeOrg } from './identity.js'
import { secretsEqual, userTokenSecret, verifyUserToken } from './tokens.js'

/** `Authorization: Bearer <token>`, scheme case-insensitive. */
export function bearerToken(request: Request): string | undefined {
  const header = request.headers.get('authorization')
  const match = header?.match(/^bearer ([^ ]+)$/i)
  return match?.[1]
}

/**
 * Evaluates the bearer credential, in this order: admin token, shared token,
 * then a signed user token. Undefined = unauthenticated.
 */
export async function authenticate(request: Request, env: Env, now = Date.now()): Promise<Identity | undefined> {
  const token = bearerToken(request)
  if (!token) return undefined
  const admin = setting(env, 'CRABBOX_ADMIN_TOKEN')
  const shared = setting(env, 'CRABBOX_SHARED_TOKEN')
  // Compare against both so timing does not reveal which one matched.
  const [isAdmin, isShared] = await Promise.all([admin ? secretsEqual(token, admin) : false, shared ? secretsEqual(token, shared) : false])
  if (isAdmin || isShared) {
    const email = await verifiedAccessEmail(request, env)
    const headerOrg = request.headers.get('x-crabbox-org')
    return {
      owner: email ?? (request.headers.get('x-crabbox-owner')?.trim() || 'unknown'),
      org: sanitizeOrg(headerOrg?.trim() ? headerOrg : setting(env, 'CRABBOX_DEFAULT_ORG')),
      auth: 'bearer',
      admin: isAdmin,
    }
  }
  const secret = userTokenSecret(env)
  if (!secret) return undefined
  const payload = await verifyUserToken(token, secret, now)
  if (!payload) return undefined
  // User tokens never carry admin rights, whatever the payload says (an `admin` claim in the payload is ignored).
  return { owner: payload.owner, org: sanitizeOrg(payload.org), auth: 'github', admin: false, githubLogin: payload.login }
}
