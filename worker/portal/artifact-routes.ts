import type { MiddlewareHandler } from 'hono'
import { RunArtifactQuery } from '../../src/protocol/artifacts.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { RunId } from '../../src/protocol/runs.js'
import { runArtifact } from '../fleet/artifacts.js'
import type { FleetEnv } from '../fleet/deps.js'
import { defineRoute, type RouteSpec } from '../fleet/route-spec.js'
import { getRunCore } from '../fleet/runs.js'
import { portalCaller } from './page.js'

/**
 * `/portal/runs/{id}/artifact?name=…`: a run's artifact, streamed out of the ARTIFACTS
 * bucket to whoever may see the run (the same rule as the run's page). Served sandboxed
 * (an HTML artifact never runs as a portal page) and never sniffed.
 */
export const ARTIFACT_PORTAL_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/runs/:id/artifact',
      summary: "One of a run's published artifacts (its own content type)",
      auth: 'user',
      params: { id: RunId },
      query: RunArtifactQuery,
    },
    async (c, deps, input) => {
      const id = input.param('id')
      getRunCore(deps.storage, portalCaller(c).identity, id)
      const artifact = runArtifact(deps.storage, id, input.query().name)
      const bucket = deps.env.ARTIFACTS
      const object = artifact && bucket ? await bucket.get(artifact.key) : null
      if (!object) throw new ApiError(404, ErrorCode.notFound, 'no such artifact on this run')
      const headers = new Headers()
      object.writeHttpMetadata(headers)
      headers.set('content-length', String(object.size))
      headers.set('etag', object.httpEtag)
      headers.set('x-content-type-options', 'nosniff')
      headers.set('cache-control', 'private, no-store')
      return new Response(object.body, { headers })
    },
  ),
]

const ARTIFACT_PATH = /^\/portal\/runs\/[^/]+\/artifact\/?$/

/**
 * Adds `sandbox` to the portal's CSP on artifact responses: an artifact opens as an opaque
 * origin, with no access to the portal's cookies or pages. First in the portal middleware,
 * so it runs after the CSP is set.
 */
export const artifactSandbox: MiddlewareHandler<FleetEnv> = async (c, next) => {
  await next()
  if (!ARTIFACT_PATH.test(c.req.path) || !c.res.ok) return
  const csp = c.res.headers.get('content-security-policy')
  c.res.headers.set('content-security-policy', csp ? `${csp}; sandbox` : 'sandbox')
}
