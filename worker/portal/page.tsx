import type { Child } from 'hono/jsx'
import { NONCE, secureHeaders } from 'hono/secure-headers'
import type { MiddlewareHandler } from 'hono'
import { ApiError } from '../../src/protocol/errors.js'
import { identityFrom, type Identity } from '../auth/identity.js'
import type { FleetContext, FleetEnv } from '../fleet/deps.js'
import { ErrorPanel, Shell, type NavItem } from './layout.js'
import { csrfMatches, CSRF_FIELD, PortalHeader, sameOriginRequest, type PortalVia } from './session.js'

/**
 * What every portal handler needs: who asks (and how they authenticated), the CSP nonce
 * of this response, and how to answer a page, an error panel or a refused form.
 */

export interface PortalCaller {
  identity: Identity
  via: PortalVia
  /** Cookie sessions: the CSRF token forms carry. */
  csrf?: string
  nonce: string
}

/**
 * The headers of every portal response: a nonce-based CSP (no script or style runs
 * without this response's nonce; nothing loads from elsewhere; forms post only here;
 * no framing except the share page's `?embed=1`, by this origin), no referrer to other
 * sites, and no caching of pages that show who is signed in.
 */
export const portalHeaders: MiddlewareHandler<FleetEnv> = secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'none'"],
    scriptSrc: [NONCE],
    styleSrc: [NONCE],
    imgSrc: ["'self'", 'data:'],
    connectSrc: ["'self'"],
    formAction: ["'self'"],
    baseUri: ["'none'"],
    frameAncestors: [(c) => (c.req.query('embed') === '1' ? "'self'" : "'none'")],
  },
  // `same-origin`, not `no-referrer`: that would make the forms' own POSTs send `Origin: null`.
  referrerPolicy: 'same-origin',
  xFrameOptions: 'SAMEORIGIN',
})

export const noStore: MiddlewareHandler<FleetEnv> = async (c, next) => {
  await next()
  c.res.headers.set('cache-control', 'no-store')
}

export function portalCaller(c: FleetContext): PortalCaller {
  const via = c.req.header(PortalHeader.via)
  const csrf = c.req.header(PortalHeader.csrf)
  return {
    identity: identityFrom(c.req.raw),
    via: via === 'bearer' || via === 'cookie' ? via : 'none',
    ...(csrf ? { csrf } : {}),
    nonce: c.get('secureHeadersNonce') ?? '',
  }
}

/** The name the header shows for the caller. */
export const callerName = (caller: PortalCaller): string =>
  `${caller.identity.githubLogin ?? caller.identity.owner}${caller.identity.admin ? ' (admin)' : ''}`

export interface PageOptions {
  status?: number
  active?: NavItem
  tail?: Child
}

/** A whole page in the shell. */
export function page(c: FleetContext, caller: PortalCaller, title: string, body: Child, options: PageOptions = {}): Response {
  const signedIn = caller.via !== 'none'
  const html = (
    <Shell
      title={title}
      nonce={caller.nonce}
      {...(signedIn ? { who: callerName(caller) } : {})}
      {...(caller.csrf ? { csrf: caller.csrf } : {})}
      active={options.active ?? 'none'}
      tail={options.tail}
    >
      {body}
    </Shell>
  )
  return c.html(`<!doctype html>${html.toString()}`, (options.status ?? 200) as 200)
}

/** Titles of the error panels a route shows, by status (the API's meaning: 404, 403, 409). */
export type ErrorTitles = Partial<Record<number, string>>

const DEFAULT_TITLES: Record<number, string> = {
  400: 'Request not valid',
  401: 'Sign in required',
  403: 'Not allowed',
  404: 'Not found',
  409: 'Unavailable',
  413: 'Too large',
  429: 'Too many requests',
  502: 'Provider error',
  503: 'Unavailable',
}

export function errorPage(c: FleetContext, caller: PortalCaller, status: number, message: string, titles: ErrorTitles = {}): Response {
  const title = titles[status] ?? DEFAULT_TITLES[status] ?? 'Something went wrong'
  return page(c, caller, title, <ErrorPanel status={status} title={title} message={message} />, { status })
}

/**
 * Runs a page handler: a caller the edge did not authenticate gets 401 (the edge already
 * redirected page requests to login), and an ApiError becomes an HTML error panel with the
 * same status and message as the API would answer.
 */
export async function guarded(
  c: FleetContext,
  titles: ErrorTitles,
  handler: (caller: PortalCaller) => Response | Promise<Response>,
): Promise<Response> {
  const caller = portalCaller(c)
  if (caller.via === 'none') return errorPage(c, caller, 401, 'Sign in to see this page.', titles)
  try {
    return await handler(caller)
  } catch (error) {
    // Deliberate errors (ApiError, any status: 404, 403, 409, a provider's 502, …) are panels; bugs stay 500s.
    if (error instanceof ApiError) return errorPage(c, caller, error.status, error.message, titles)
    throw error
  }
}

/**
 * A state-changing form is accepted only from the broker's own pages: for a cookie
 * session, the request's origin must be the broker's and the form must carry the
 * session's CSRF token. A bearer token is no ambient credential, so it needs neither.
 */
export async function checkForm(c: FleetContext, caller: PortalCaller, form: Record<string, unknown>): Promise<void> {
  if (caller.via === 'bearer') return
  const posted = form[CSRF_FIELD]
  if (caller.via !== 'cookie' || !sameOriginRequest(c.req.raw, c.env))
    throw new ApiError(403, 'cross_site_request', 'This form was not sent from the Crabbox portal.')
  if (!(await csrfMatches(typeof posted === 'string' ? posted : undefined, caller.csrf)))
    throw new ApiError(
      403,
      'invalid_csrf_token',
      'This form is out of date or was not sent from the Crabbox portal. Reload the page and try again.',
    )
}

/** The hidden field every state-changing form carries. */
export function CsrfField({ caller }: { caller: PortalCaller }) {
  return caller.csrf ? <input type="hidden" name={CSRF_FIELD} value={caller.csrf} /> : null
}
