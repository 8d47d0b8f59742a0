import * as v from 'valibot'
import { ApiError } from '../../src/protocol/errors.js'
import { sha256Hex, startGithubLogin, LOGIN_TTL_MS } from '../fleet/github.js'
import { defineRoute, type RouteSpec } from '../fleet/route-spec.js'
import { LeaseRef } from '../../src/protocol/leases.js'
import { RunEventsQuery, RunEventsResponse, RunId } from '../../src/protocol/runs.js'
import { releaseLease } from '../fleet/leases.js'
import { getRunCore, pageRunEvents, readRunLog } from '../fleet/runs.js'
import { ARTIFACT_PORTAL_ROUTES, artifactSandbox } from './artifact-routes.js'
import { LeaseGridPage, LeaseGridParams } from './lease-grid.js'
import { LeasePage, LeasePageQuery, visibleLease } from './lease-page.js'
import { LIVE_ROUTES } from './live-routes.js'
import { LIVE_RUN_SCRIPT_PATH } from './live-run.js'
import { checkForm, errorPage, guarded, noStore, page, portalCaller, portalHeaders } from './page.js'
import { RunPage, runView } from './run-page.js'
import { RUNNER_PORTAL_ROUTES } from './runner-pages.js'
import { applyShareForm, ShareForm, SharePage } from './share-page.js'
import { UsagePage, UsagePageQuery } from './usage-page.js'
import { VNC_PAGE_ROUTES } from './vnc-page.js'
import { VNC_ROUTES } from './vnc-routes.js'
import { CODE_PORTAL_ROUTES } from './code-routes.js'
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

/** A form that carries nothing but its CSRF token (sign out, stop). */
export const CsrfOnlyForm = v.object({ [CSRF_FIELD]: v.optional(v.pipe(v.string(), v.maxLength(128))) })
export const LoginQuery = v.object({ returnTo: v.optional(v.pipe(v.string(), v.maxLength(2048))) })

/** Middleware for every /portal path (worker/fleet/routes.ts mounts it): CSP with nonce and no caching. */
export const PORTAL_MIDDLEWARE = [artifactSandbox, portalHeaders, noStore] as const

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
        // 503 when GitHub login is not configured, 429 when too many sign-ins are pending.
        if (error instanceof ApiError)
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
      body: CsrfOnlyForm,
      bodyMediaType: 'application/x-www-form-urlencoded',
      response: HTML_PAGE,
    },
    async (c, _deps, input) => {
      const caller = portalCaller(c)
      try {
        if (caller.via === 'cookie') await checkForm(c, caller, await input.body({ maxBytes: MAX_FORM_BYTES }))
      } catch (error) {
        if (error instanceof ApiError) return errorPage(c, caller, error.status, error.message)
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

const LEASE_TITLES = { 404: 'Lease not found', 409: 'Lease unavailable' }
const leaseParams = { id: LeaseRef }
const runParams = { id: RunId }

const LEASE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/leases/:id',
      summary: 'A lease: status, telemetry, access commands, recent runs, stop (HTML)',
      auth: 'user',
      params: leaseParams,
      query: LeasePageQuery,
      response: HTML_PAGE,
    },
    (c, deps, input) =>
      guarded(c, LEASE_TITLES, (caller) => {
        const lease = visibleLease(deps, caller, input.param('id'))
        const parsed = input.safeQuery()
        const filter = parsed.success ? parsed.output.runs : undefined
        return page(c, caller, `Lease ${lease.slug || lease.id}`, <LeasePage deps={deps} caller={caller} lease={lease} filter={filter} />)
      }),
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/portal/leases/:id/release',
      summary: 'Stop a lease and delete its machine (manage rights; same-origin form with the CSRF token); 303 to /portal',
      auth: 'user',
      params: leaseParams,
      body: CsrfOnlyForm,
      bodyMediaType: 'application/x-www-form-urlencoded',
      response: HTML_PAGE,
    },
    (c, deps, input) =>
      guarded(c, { ...LEASE_TITLES, 403: 'Stop unavailable' }, async (caller) => {
        const id = input.param('id')
        await checkForm(c, caller, await input.body({ maxBytes: MAX_FORM_BYTES }))
        await releaseLease(deps, caller.identity, id, { delete: true, forgetKeep: true })
        return c.redirect('/portal', 303)
      }),
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/portal/leases/:id/share',
      summary: "A lease's sharing: people, org role, clear (manage rights; `?embed=1` may be framed by this origin)",
      auth: 'user',
      params: leaseParams,
      response: HTML_PAGE,
    },
    (c, deps, input) =>
      guarded(c, { ...LEASE_TITLES, 403: 'Share unavailable' }, (caller) => {
        const lease = visibleLease(deps, caller, input.param('id'))
        const embed = c.req.query('embed') === '1'
        return page(c, caller, `Share ${lease.slug || lease.id}`, <SharePage deps={deps} caller={caller} lease={lease} embed={embed} />)
      }),
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/portal/leases/:id/share',
      summary:
        'Change sharing: `action` add-user, remove-user, set-org or clear (same-origin form with the CSRF token); 303 to the share page',
      auth: 'user',
      params: leaseParams,
      body: ShareForm,
      bodyMediaType: 'application/x-www-form-urlencoded',
      response: HTML_PAGE,
    },
    (c, deps, input) =>
      guarded(c, { ...LEASE_TITLES, 403: 'Share unavailable' }, async (caller) => {
        const lease = visibleLease(deps, caller, input.param('id'))
        const form = await input.body({ maxBytes: MAX_FORM_BYTES })
        await checkForm(c, caller, form)
        applyShareForm(deps, caller.identity, lease, form)
        return c.redirect(`/portal/leases/${lease.id}/share${c.req.query('embed') === '1' ? '?embed=1' : ''}`, 303)
      }),
  ),
]

const RUN_TITLES = { 404: 'Run not found' }

const RUN_PAGE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/runs/:id',
      summary: 'A run: summary, phases, test results, log, events (HTML; live while it runs)',
      auth: 'user',
      params: runParams,
      response: HTML_PAGE,
    },
    (c, deps, input) =>
      guarded(c, RUN_TITLES, (caller) => {
        const view = runView(deps, caller, input.param('id'))
        // A running run's page loads the live script, with this response's nonce.
        const live = view.run.state === 'running' ? <script nonce={caller.nonce} src={LIVE_RUN_SCRIPT_PATH} defer></script> : undefined
        return page(c, caller, `Run ${view.run.id}`, <RunPage view={view} now={deps.now()} />, { tail: live })
      }),
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/portal/runs/:id/logs',
      summary: "A run's retained log (text/plain)",
      auth: 'user',
      params: runParams,
      response: v.string(),
    },
    (c, deps, input) => {
      const log = readRunLog(deps.storage, portalCaller(c).identity, input.param('id'))
      return c.body(log, 200, { 'content-type': 'text/plain; charset=utf-8' })
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/portal/runs/:id/events',
      summary: "A page of a run's events after a sequence number (JSON, as `GET /v1/runs/{id}/events`)",
      auth: 'user',
      params: runParams,
      query: RunEventsQuery,
      response: RunEventsResponse,
    },
    (c, deps, input) => {
      const id = input.param('id')
      const query = input.query()
      getRunCore(deps.storage, portalCaller(c).identity, id)
      const { events, more } = pageRunEvents(deps.storage, id, query.after, query.limit)
      return c.json(more ? { events, nextSeq: events.at(-1)!.seq } : { events })
    },
  ),
]

const USAGE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/usage',
      summary: "A month's spend and lease hours by owner and org against the caps (HTML)",
      auth: 'user',
      query: UsagePageQuery,
      response: HTML_PAGE,
    },
    (c, deps, input) =>
      guarded(c, {}, (caller) => {
        const parsed = input.safeQuery()
        return page(c, caller, 'Usage', <UsagePage deps={deps} caller={caller} raw={parsed.success ? parsed.output : {}} />, {
          active: 'usage',
        })
      }),
  ),
]

/** Every portal route (the edge answers `/` → `/portal` and the canonical-origin redirect itself). */
export const PORTAL_ROUTES: readonly RouteSpec[] = [
  ...AUTH_ROUTES,
  ...PAGE_ROUTES,
  ...LEASE_ROUTES,
  ...RUN_PAGE_ROUTES,
  ...USAGE_ROUTES,
  ...LIVE_ROUTES,
  ...VNC_ROUTES,
  ...CODE_PORTAL_ROUTES,
  ...VNC_PAGE_ROUTES,
  ...ARTIFACT_PORTAL_ROUTES,
  ...RUNNER_PORTAL_ROUTES,
]
