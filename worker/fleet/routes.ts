import { Hono } from 'hono'
import { ArtifactObjectKey } from '../../src/protocol/artifacts.js'
import { HealthResponse } from '../../src/protocol/auth.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { WhoamiResponse } from '../../src/protocol/leases.js'
import { identityFrom } from '../auth/identity.js'
import { discardBody } from '../body-limit.js'
import { ADMIN_PREFIXES, ADMIN_ROUTES } from './admin-routes.js'
import { CODE_ROUTES } from './code-routes.js'
import { ARTIFACT_ROUTES } from './artifacts-routes.js'
import { CONTROL_ROUTES } from './control-routes.js'
import type { FleetApp, FleetContext, FleetDeps, FleetEnv } from './deps.js'
import { GITHUB_ROUTES } from './github-routes.js'
import { IMAGE_ROUTES } from './image-routes.js'
import { LEASE_ROUTES } from './lease-routes.js'
import { requireAdmin } from './request.js'
import type { RouteDoc } from './route-doc.js'
import { defineRoute, type RouteSpec } from './route-spec.js'
import { EGRESS_ROUTES } from './egress-routes.js'
import { RUN_ROUTES } from './runs-routes.js'
import { RUNNER_ROUTES } from './runners-routes.js'
import { USAGE_ROUTES } from './usage-routes.js'
import { WEBVNC_ROUTES } from './webvnc-routes.js'
import { PORTAL_MIDDLEWARE, PORTAL_ROUTES } from '../portal/routes.js'

export type { RouteDoc } from './route-doc.js'
export type { RouteSpec } from './route-spec.js'

/** Routes the edge Worker answers itself, without the Fleet object. */
export const EDGE_ROUTES: readonly RouteDoc[] = [
  { method: 'GET', path: '/v1/health', summary: 'Liveness; needs no credential', auth: 'none', response: HealthResponse },
  { method: 'GET', path: '/v1/openapi.json', summary: 'This API description (OpenAPI 3.1), generated from the wire schemas', auth: 'none' },
  {
    method: 'PUT',
    path: '/v1/artifacts/objects/:key',
    summary: 'Upload one artifact through a signed link from POST /v1/artifacts/uploads (the signature is the credential)',
    auth: 'none',
    params: { key: ArtifactObjectKey },
  },
  {
    method: 'GET',
    path: '/v1/artifacts/objects/:key',
    summary: 'Read one artifact through a signed read link (the signature is the credential)',
    auth: 'none',
    params: { key: ArtifactObjectKey },
  },
]

const WHOAMI_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    { method: 'GET', path: '/v1/whoami', summary: 'Who the broker thinks the caller is', auth: 'user', response: WhoamiResponse },
    (c) => {
      const identity = c.get('identity')
      return c.json({
        owner: identity.owner,
        org: identity.org,
        auth: identity.auth,
        admin: identity.admin,
        ...(identity.githubLogin ? { login: identity.githubLogin } : {}),
      })
    },
  ),
]

/**
 * Every route the Fleet object answers, in matching order: the /v1 API and the portal's
 * pages (worker/portal/routes.tsx). With EDGE_ROUTES (`[...EDGE_ROUTES, ...ROUTES]`) this
 * is the broker's whole HTTP surface.
 */
export const ROUTES: readonly RouteSpec[] = [
  ...WHOAMI_ROUTES,
  ...LEASE_ROUTES,
  ...WEBVNC_ROUTES,
  ...CODE_ROUTES,
  ...EGRESS_ROUTES,
  ...ADMIN_ROUTES,
  ...IMAGE_ROUTES,
  ...RUN_ROUTES,
  ...CONTROL_ROUTES,
  ...USAGE_ROUTES,
  ...GITHUB_ROUTES,
  ...ARTIFACT_ROUTES,
  ...RUNNER_ROUTES,
  ...PORTAL_ROUTES,
]

/** The broker's whole HTTP API: what /v1/openapi.json and docs/api.md describe. */
export const API_ROUTES: readonly RouteDoc[] = [...EDGE_ROUTES, ...ROUTES]

/**
 * The Hono app inside the Fleet object, built from ROUTES. The edge has already
 * authenticated the caller (except for `auth: 'none'` routes) and forwarded the
 * identity in headers.
 */
export function createFleetApp(deps: FleetDeps): FleetApp {
  const app: FleetApp = new Hono<FleetEnv>({ strict: false }) // trailing slashes are ignored

  app.onError(async (error, c) => {
    // Answering before the body was read: cancel it (never drain: it may be endless).
    await discardBody(c.req.raw)
    if (error instanceof ApiError) return c.json(error.body, error.status as 400)
    console.error('fleet error', error)
    return c.json({ error: ErrorCode.internal, message: 'internal error; the broker log has details' }, 500)
  })
  app.notFound((c) => c.json({ error: ErrorCode.notFound, message: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404))

  app.use('*', async (c, next) => {
    c.set('identity', identityFrom(c.req.raw))
    await next()
    // A route that answered without reading the body (404 and the like) cancels the rest.
    await discardBody(c.req.raw)
  })
  // Admin prefixes answer 403 before routing, for any method and any path below them.
  for (const prefix of ADMIN_PREFIXES) {
    app.use(prefix, async (c, next) => {
      requireAdmin(c)
      await next()
    })
  }

  // Portal pages: a nonce-based CSP and no caching on every response below /portal.
  app.use('/portal', ...PORTAL_MIDDLEWARE)
  app.use('/portal/*', ...PORTAL_MIDDLEWARE)

  for (const route of ROUTES) {
    const handler = (c: FleetContext) => {
      if (route.auth === 'admin') requireAdmin(c)
      return route.handler(c, deps)
    }
    // Upgrade routes take every method, so a plain request learns it needs a WebSocket (426).
    if (route.websocket) app.all(route.path, handler)
    else app.on(route.method, route.path, handler)
  }
  return app
}
