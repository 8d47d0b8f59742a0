import { ErrorCode } from '../../src/protocol/errors.js'
import type { Identity } from '../auth/identity.js'
import { bodyTooLarge, declaresMoreThan, MAX_BODY_BYTES } from '../body-limit.js'
import { answerUnread } from '../edge-body.js'
import { setting, type Env } from '../env.js'
import { portalCredential, PortalHeader } from './session.js'

/**
 * The edge's part of the portal (worker/index.ts mounts it on `/portal` and below):
 * the canonical-origin redirect, authentication by bearer token or session cookie, the
 * redirect of a signed-out page request to login, and forwarding to the Fleet object
 * with the identity and the portal headers (how the caller authenticated, the CSRF token).
 */

export type Forward = (request: Request, env: Env, identity?: Identity, extra?: Record<string, string>) => Promise<Response>

const OPEN_PATHS = new Set(['/portal/login', '/portal/logout'])

const isUpgrade = (request: Request) => request.headers.get('upgrade')?.toLowerCase() === 'websocket'

/** The same path and query on CRABBOX_PUBLIC_URL's origin, when the request came to another one. */
export function canonicalRedirect(request: Request, env: Env): Response | undefined {
  if ((request.method !== 'GET' && request.method !== 'HEAD') || isUpgrade(request)) return undefined
  const configured = setting(env, 'CRABBOX_PUBLIC_URL')
  if (!configured) return undefined
  let origin: string
  try {
    origin = new URL(configured).origin
  } catch {
    return undefined
  }
  const url = new URL(request.url)
  if (url.origin === origin) return undefined
  return new Response(null, { status: 302, headers: { location: `${origin}${url.pathname}${url.search}`, 'cache-control': 'no-store' } })
}

/** Where a signed-out page request goes: login, remembering the page (path and query only). */
export function loginRedirect(request: Request): Response {
  const url = new URL(request.url)
  const returnTo = encodeURIComponent(`${url.pathname}${url.search}`)
  return new Response(null, { status: 302, headers: { location: `/portal/login?returnTo=${returnTo}`, 'cache-control': 'no-store' } })
}

export async function portalEdge(request: Request, env: Env, forward: Forward): Promise<Response> {
  const canonical = canonicalRedirect(request, env)
  if (canonical) return canonical
  if (declaresMoreThan(request, MAX_BODY_BYTES)) {
    const error = bodyTooLarge(MAX_BODY_BYTES)
    return answerUnread(Response.json(error.body, { status: 413 }), request)
  }
  const path = new URL(request.url).pathname.replace(/\/+$/, '') || '/'
  const credential = await portalCredential(request, env)
  if (!credential) {
    if (OPEN_PATHS.has(path)) return forward(request, env, undefined, { [PortalHeader.via]: 'none' })
    if ((request.method === 'GET' || request.method === 'HEAD') && !isUpgrade(request)) return answerUnread(loginRedirect(request), request)
    return answerUnread(
      Response.json({ error: ErrorCode.unauthorized, message: 'sign in to the portal or send a bearer token' }, { status: 401 }),
      request,
    )
  }
  return forward(request, env, credential.identity, {
    [PortalHeader.via]: credential.via,
    ...(credential.csrf ? { [PortalHeader.csrf]: credential.csrf } : {}),
  })
}
