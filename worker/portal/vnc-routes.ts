import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { LeaseRef } from '../../src/protocol/leases.js'
import { VIEWER_ID_PATTERN, WebVncControlRequest, WebVncStatus, WebVncStatusQuery, WebVncViewerQuery } from '../../src/protocol/webvnc.js'
import { handoffResponse } from '../bridge/handoff.js'
import { defineRoute, type RouteSpec } from '../fleet/route-spec.js'
import { isUpgrade } from '../fleet/webvnc-routes.js'
import { relayFacts, requireWebVnc, takeControl, viewerLabel, webVncStatus } from '../fleet/webvnc.js'
import { visibleLease } from './lease-page.js'
import { portalCaller } from './page.js'
import { publicOrigin, sameOriginRequest } from './session.js'

/**
 * The portal's WebVNC endpoints for the viewer page: status, take control, and the viewer
 * socket (opened at the lease's relay object). A session cookie is honoured only on
 * requests from the broker's own pages: a browser sends the cookie with any site's
 * WebSocket upgrade or fetch to this host, but always says which page asked in `Origin`.
 */

function refuseCrossOrigin(request: Request, env: Parameters<typeof publicOrigin>[0], via: string, socket: boolean): void {
  if (via !== 'cookie') return
  const ok = socket ? request.headers.get('origin') === publicOrigin(env, request) : sameOriginRequest(request, env)
  if (!ok) throw new ApiError(403, ErrorCode.forbidden, 'WebVNC takes the session cookie only from the portal pages of this broker')
}

export const VNC_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/leases/:id/vnc/status',
      summary: 'WebVNC status for the viewer page (JSON; `viewer` names the asking viewer)',
      auth: 'user',
      params: { id: LeaseRef },
      query: WebVncStatusQuery,
      response: WebVncStatus,
    },
    async (c, deps, input) => {
      const lease = visibleLease(deps, portalCaller(c), input.param('id'))
      requireWebVnc(lease)
      return c.json(await webVncStatus(deps, lease, input.query().viewer))
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/portal/leases/:id/vnc/control',
      summary: 'Take control of the WebVNC session for a connected viewer (JSON `{"viewerID"}`); records `control_taken`',
      auth: 'user',
      params: { id: LeaseRef },
      body: WebVncControlRequest,
      response: WebVncStatus,
    },
    async (c, deps, input) => {
      const caller = portalCaller(c)
      refuseCrossOrigin(c.req.raw, c.env, caller.via, false)
      const lease = visibleLease(deps, caller, input.param('id'))
      requireWebVnc(lease)
      const { viewerID } = await input.body({ maxBytes: 4096 })
      if (typeof viewerID !== 'string' || !VIEWER_ID_PATTERN.test(viewerID))
        throw new ApiError(400, 'invalid_viewer', 'viewerID must look like viewer_<6 to 80 of A-Z a-z 0-9 _ . : ->')
      return c.json(await takeControl(deps, lease, viewerID, caller.identity))
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/portal/leases/:id/vnc/viewer',
      summary: "The viewer page's WebSocket: claims an idle bridge agent and relays its RFB bytes",
      auth: 'user',
      websocket: true,
      params: { id: LeaseRef },
      query: WebVncViewerQuery,
    },
    (c, deps, input) => {
      if (!isUpgrade(c.req.raw)) throw new ApiError(426, 'upgrade_required', 'WebVNC viewer requires a websocket upgrade')
      const caller = portalCaller(c)
      refuseCrossOrigin(c.req.raw, c.env, caller.via, true)
      const lease = visibleLease(deps, caller, input.param('id'))
      requireWebVnc(lease)
      const viewer = input.query().viewer
      return handoffResponse('viewer', relayFacts(lease, { label: viewerLabel(caller.identity), ...(viewer ? { viewerID: viewer } : {}) }))
    },
  ),
]
