import * as v from 'valibot'
import { ApiError } from '../../src/protocol/errors.js'
import { sha256Hex, startGithubLogin, LOGIN_TTL_MS } from '../fleet/github.js'
import { defineRoute, type RouteSpec } from '../fleet/route-spec.js'
import { LeaseGridPage, LeaseGridParams } from './lease-grid.js'
import { LIVE_ROUTES } from './live-routes.js'
import { checkForm, errorPage, guarded, noStore, page, portalCaller, portalHeaders } from './page.js'
import { clearedSessionCookie, CSRF_FIELD, loginCookie, safeReturnTo } from './session.js'

/**
 * The portal's pages: every `/portal` route, in matching order. They are part of the
 * broker's one route table (worker/fleet/routes.ts spreads PORTAL_ROUTES into ROUTES), so
 * the API description lists them too. The edge (worker/portal/edge.ts) has already
 * authenticated the caller (bearer token or session cookie) or redirected a page request
 * to login; `guarded` answers anything else with an HTML error panel.
 */

/** Pages answer HTML: a string schema with its media type (see worker/openapi.ts). */
const HTML_PAGE = v.pipe(v.string(), v.metadata({ contentMediaType: 'text/html' }))

/** Every form names its CSRF token; a form is a few hundred bytes. */
const MAX_FORM_BYTES = 8 * 1024

export const LogoutForm = v.object({ [CSRF_FIELD]: v.optional(v.pipe(v.string(), v.maxLength(128))) })
export const LoginQuery = v.object({ returnTo: v.optional(v.pipe(v.string(), v.maxLength(2048))) })

/** Middleware for every /portal path (worker/fleet/routes.ts mounts it): CSP with nonce and no caching. */
export const PORTAL_MIDDLEWARE = [portalHeaders, noStore] as const

const randomHex = (n: number) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('')

const AUTH_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/login',
      summary: 'Portal sign-in: redirects to GitHub (portal mode); `returnTo` is kept only for portal paths',
      auth: 'none',
      query: LoginQuery,
      response: HTML_PAGE,
    },
    async (c, deps, input) => {
      const caller = portalCaller(c)
      const parsed = input.safeQuery()
      const returnTo = safeReturnTo(parsed.success ? parsed.output.returnTo : undefined)
      // Already signed in: straight on.
      if (caller.via !== 'none') return c.redirect(returnTo, 302)
      // The browser keeps a secret; the login keeps its hash; the callback requires both to match.
      const browser = randomHex(16)
      try {
        const started = startGithubLogin(
          deps,
          { mode: 'portal', returnTo, browserHash: await sha256Hex(browser) },
          { address: c.req.header('cf-connecting-ip') },
        )
        c.header('set-cookie', loginCookie(browser, LOGIN_TTL_MS / 1000))
        return c.redirect(started.url, 302)
      } catch (error) {
        if (error instanceof ApiError && error.status < 500)
          return errorPage(c, caller, error.status, error.message, { 503: 'Sign-in unavailable', 429: 'Too many sign-ins' })
        throw error
      }
    },
  ),
  defineRoute(
    { method: 'GET', path: '/portal/logout', summary: 'The sign-out page (signing out is a form post)', auth: 'none', response: HTML_PAGE },
    (c) => {
      const caller = portalCaller(c)
      const body =
        caller.via === 'cookie' ? (
          <section class="card">
            <h1>Sign out</h1>
            <form method="post" action="/portal/logout">
              <input type="hidden" name={CSRF_FIELD} value={caller.csrf ?? ''} />
              <button type="submit">Sign out of Crabbox</button>
            </form>
          </section>
        ) : (
          <section class="card">
            <h1>Signed out</h1>
            <p>
              <a href="/portal/login">Sign in again</a>
            </p>
          </section>
        )
      return page(c, caller, caller.via === 'cookie' ? 'Sign out' : 'Signed out', body)
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/portal/logout',
      summary: 'Sign out: clears the session cookie (same-origin form with the session CSRF token)',
      auth: 'none',
      body: LogoutForm,
      bodyMediaType: 'application/x-www-form-urlencoded',
      response: HTML_PAGE,
    },
    async (c, _deps, input) => {
      const caller = portalCaller(c)
      try {
        if (caller.via === 'cookie') await checkForm(c, caller, await input.body({ maxBytes: MAX_FORM_BYTES }))
      } catch (error) {
        if (error instanceof ApiError && error.status < 500) return errorPage(c, caller, error.status, error.message)
        throw error
      }
      c.header('set-cookie', clearedSessionCookie())
      const signedOut = { ...caller, via: 'none' as const, csrf: undefined }
      return page(
        c,
        signedOut,
        'Signed out',
        <section class="card">
          <h1>Signed out</h1>
          <p>
            <a href="/portal/login">Sign in again</a>
          </p>
        </section>,
      )
    },
  ),
]

const PAGE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal',
      summary: 'The lease grid: search, filters, sorting, pages (HTML)',
      auth: 'user',
      query: LeaseGridParams,
      response: HTML_PAGE,
    },
    (c, deps, input) =>
      guarded(c, {}, (caller) => {
        const parsed = input.safeQuery()
        const raw = parsed.success ? parsed.output : {}
        return page(c, caller, 'Leases', <LeaseGridPage deps={deps} caller={caller} raw={raw} />, { active: 'leases' })
      }),
  ),
]

/** Every portal route (the edge answers `/` → `/portal` and the canonical-origin redirect itself). */
export const PORTAL_ROUTES: readonly RouteSpec[] = [...AUTH_ROUTES, ...PAGE_ROUTES, ...LIVE_ROUTES]
