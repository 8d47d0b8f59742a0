import { generateCookie } from 'hono/cookie'
import { parse as parseCookies } from 'hono/utils/cookie'
import { authenticate, bearerToken, userTokenIdentity } from '../auth/authenticate.js'
import type { Identity } from '../auth/identity.js'
import { secretsEqual, USER_TOKEN_LIFETIME_SECONDS } from '../auth/tokens.js'
import { setting, type Env } from '../env.js'

/**
 * The portal's browser session. GitHub login in portal mode ends with a signed `cbxu_`
 * user token (the same one `crabbox login` hands the CLI) in the `crabbox_session`
 * cookie: HttpOnly, Secure, SameSite=Lax, Path=/. Only a user token counts in the cookie
 * (never the admin or shared token), so a browser session is exactly the identity that
 * token gives as a bearer token. A bearer `Authorization` header works on every page too.
 *
 * State-changing forms need two things when the cookie authenticated the request: the
 * request comes from the broker's own origin (`Origin`, else `Sec-Fetch-Site`), and the
 * form carries the session's CSRF token, an HMAC of the session token under
 * CRABBOX_SESSION_SECRET (no storage; it changes with every login).
 */

export const SESSION_COOKIE = 'crabbox_session'
/** Binds a portal login to the browser that started it (checked by the GitHub callback). */
export const LOGIN_COOKIE = 'crabbox_login'
/** The form field that carries the CSRF token. */
export const CSRF_FIELD = 'csrf'

/**
 * What the edge tells the Fleet object about a portal request, next to the identity
 * headers: how it authenticated (`bearer`, `cookie` or `none`) and, for a cookie
 * session, the CSRF token forms must carry. Callers cannot set them (the edge strips them).
 */
export const PortalHeader = {
  via: 'x-crabbox-portal-auth',
  csrf: 'x-crabbox-portal-csrf',
} as const
export const PORTAL_HEADERS: readonly string[] = Object.values(PortalHeader)

export type PortalVia = 'bearer' | 'cookie' | 'none'

export interface PortalCredential {
  identity: Identity
  via: Exclude<PortalVia, 'none'>
  /** Cookie sessions only: the token forms must send back. */
  csrf?: string
}

const encoder = new TextEncoder()

function base64url(bytes: ArrayBuffer): string {
  let binary = ''
  for (const b of new Uint8Array(bytes)) binary += String.fromCharCode(b)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** The session token in the request's `crabbox_session` cookie, if any. */
export function sessionToken(request: Request): string | undefined {
  const header = request.headers.get('cookie')
  if (!header) return undefined
  const value = parseCookies(header, SESSION_COOKIE)[SESSION_COOKIE]
  return value ? value : undefined
}

/**
 * The identity of the request's portal session cookie, or undefined (no cookie, not a
 * valid user token, expired, or no session secret). For the control WebSocket upgrade as
 * much as for pages; a caller that accepts it for a state change must also check
 * `sameOriginRequest`.
 */
export async function readPortalIdentity(request: Request, env: Env, now = Date.now()): Promise<Identity | undefined> {
  const token = sessionToken(request)
  return token ? userTokenIdentity(token, env, now) : undefined
}

/** The CSRF token of a session: HMAC-SHA256(CRABBOX_SESSION_SECRET, purpose + session token). */
export async function csrfToken(session: string, secret: string): Promise<string> {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
  return base64url(await crypto.subtle.sign('HMAC', key, encoder.encode(`crabbox-portal-csrf\n${session}`)))
}

/** Constant-time check of a posted CSRF token against the session's. */
export async function csrfMatches(posted: string | undefined, expected: string | undefined): Promise<boolean> {
  if (!posted || !expected) return false
  return secretsEqual(posted, expected)
}

/**
 * A page request's credential: the `Authorization` header first (any bearer token, as on
 * the API), else the session cookie. A request with an Authorization header that does not
 * authenticate is not rescued by the cookie.
 */
export async function portalCredential(request: Request, env: Env, now = Date.now()): Promise<PortalCredential | undefined> {
  if (bearerToken(request) || request.headers.has('authorization')) {
    const identity = await authenticate(request, env, now)
    return identity ? { identity, via: 'bearer' } : undefined
  }
  const token = sessionToken(request)
  if (!token) return undefined
  const identity = await userTokenIdentity(token, env, now)
  const secret = setting(env, 'CRABBOX_SESSION_SECRET')
  if (!identity || !secret) return undefined
  return { identity, via: 'cookie', csrf: await csrfToken(token, secret) }
}

/** The broker's canonical origin: CRABBOX_PUBLIC_URL's, else the request's own. */
export function publicOrigin(env: Env, request: Request): string {
  const configured = setting(env, 'CRABBOX_PUBLIC_URL')
  if (configured) {
    try {
      return new URL(configured).origin
    } catch {
      // A malformed setting falls back to the request's origin.
    }
  }
  return new URL(request.url).origin
}

/**
 * Does a browser say this request comes from the broker's own pages? `Origin` must be
 * the canonical origin; without it, `Sec-Fetch-Site` must be `same-origin`. A request
 * that carries neither is refused: every browser that runs the portal sends one.
 */
export function sameOriginRequest(request: Request, env: Env): boolean {
  const origin = request.headers.get('origin')
  if (origin !== null) return origin === publicOrigin(env, request)
  return request.headers.get('sec-fetch-site') === 'same-origin'
}

/**
 * Where a login may send the browser back to: a path of the portal only (`/portal`,
 * `/portal/…`, `/portal?…`), never another origin, a scheme-relative URL or a path
 * that leaves the portal once resolved. Anything else becomes `/portal`.
 */
export function safeReturnTo(value: string | null | undefined): string {
  const fallback = '/portal'
  if (!value || value.length > 2048) return fallback
  // eslint-disable-next-line no-control-regex -- control characters and backslashes never belong in a return path
  if (!/^\/portal(?:[/?#]|$)/.test(value) || /[\u0000-\u001f\u007f\\]/.test(value) || value.includes('://')) return fallback
  let resolved: URL
  try {
    resolved = new URL(value, 'https://portal.invalid')
  } catch {
    return fallback
  }
  if (resolved.origin !== 'https://portal.invalid') return fallback
  if (resolved.pathname !== '/portal' && !resolved.pathname.startsWith('/portal/')) return fallback
  return `${resolved.pathname}${resolved.search}`
}

const COOKIE_BASE = { path: '/', httpOnly: true, secure: true, sameSite: 'Lax' } as const

/** `Set-Cookie` for a new session (lives as long as the user token inside it). */
export function sessionCookie(token: string): string {
  return `${SESSION_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=${USER_TOKEN_LIFETIME_SECONDS}`
}

/** `Set-Cookie` that ends the session. */
export function clearedSessionCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0`
}

/** `Set-Cookie` of the login binding: sent back only to the GitHub callback, for the login's lifetime. */
export function loginCookie(secret: string, maxAgeSeconds: number): string {
  return generateCookie(LOGIN_COOKIE, secret, { ...COOKIE_BASE, path: '/v1/auth/github/callback', maxAge: maxAgeSeconds })
}

/** The login binding the browser sent, if any. */
export function loginBinding(request: Request): string | undefined {
  const header = request.headers.get('cookie')
  if (!header) return undefined
  return parseCookies(header, LOGIN_COOKIE)[LOGIN_COOKIE] || undefined
}
