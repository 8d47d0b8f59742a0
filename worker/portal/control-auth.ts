import type { Identity } from '../auth/identity.js'
import type { Env } from '../env.js'
import { publicOrigin, readPortalIdentity, sessionToken } from './session.js'

/**
 * The control WebSocket (`/v1/control`) from a portal page: the run page streams a running
 * run over the same socket the CLI uses, authenticated by the session cookie instead of a
 * bearer header (a browser cannot set one on a WebSocket). The cookie gives exactly the
 * identity its user token gives as a bearer token, so the socket's authorization is the same.
 *
 * Cross-site WebSocket hijacking: a browser sends the cookie with any page's upgrade to this
 * host (SameSite=Lax still counts other ports of the same host as the same site), but it
 * always says which page asked in `Origin`. A cookie-authenticated upgrade is accepted only
 * when `Origin` is the broker's own (CRABBOX_PUBLIC_URL's origin); a missing one is refused too.
 */
export type ControlCookie = { identity: Identity } | { refused: 'cross_origin' } | undefined

/**
 * Undefined when the request carries an `Authorization` header (bearer rules apply, the
 * cookie never rescues a bad token) or no valid session cookie; otherwise the identity, or
 * a refusal when the upgrade does not come from the broker's own origin.
 */
export async function controlCookieIdentity(request: Request, env: Env): Promise<ControlCookie> {
  if (request.headers.has('authorization') || !sessionToken(request)) return undefined
  const identity = await readPortalIdentity(request, env)
  if (!identity) return undefined
  const origin = request.headers.get('origin')
  if (origin === null || origin !== publicOrigin(env, request)) return { refused: 'cross_origin' }
  return { identity }
}
