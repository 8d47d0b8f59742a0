import { ApiError } from '../../src/protocol/errors.js'
import { LeaseRef } from '../../src/protocol/leases.js'
import { WebVncAgentQuery, WebVncResetResponse, WebVncStatus, WebVncStatusQuery, WebVncTicketResponse } from '../../src/protocol/webvnc.js'
import { handoffResponse } from '../bridge/handoff.js'
import { resolveLease } from './lease-store.js'
import { defineRoute, type RouteSpec } from './route-spec.js'
import { consumeTicket, mintTicket, presentedTicket, relayFacts, requireWebVnc, resetWebVnc, webVncStatus } from './webvnc.js'

export const isUpgrade = (request: Request) => request.headers.get('upgrade')?.toLowerCase() === 'websocket'

/**
 * `/v1/leases/{id}/webvnc/…`: tickets, status and reset for callers who can see the lease,
 * and the CLI bridge's agent socket, authenticated by a one-use ticket instead of a
 * credential. The socket itself is opened at the lease's relay object (worker/bridge/).
 */
export const WEBVNC_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'POST',
      path: '/v1/leases/:id/webvnc/ticket',
      summary: 'A one-use WebVNC bridge ticket (120 s) for one agent socket',
      auth: 'user',
      params: { id: LeaseRef },
      response: WebVncTicketResponse,
    },
    (c, deps, input) => {
      const now = deps.now()
      const lease = resolveLease(deps.storage, c.get('identity'), input.param('id'), now)
      requireWebVnc(lease)
      return c.json(mintTicket(deps.storage, lease, now))
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/leases/:id/webvnc/status',
      summary: 'WebVNC bridge and viewer status with the last events (`viewer` names the asking viewer)',
      auth: 'user',
      params: { id: LeaseRef },
      query: WebVncStatusQuery,
      response: WebVncStatus,
    },
    async (c, deps, input) => {
      const lease = resolveLease(deps.storage, c.get('identity'), input.param('id'), deps.now())
      requireWebVnc(lease)
      return c.json(await webVncStatus(deps, lease, input.query().viewer))
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/leases/:id/webvnc/reset',
      summary: 'Close every WebVNC viewer and agent (1012), clear buffers, record `reset`',
      auth: 'user',
      params: { id: LeaseRef },
      response: WebVncResetResponse,
    },
    async (c, deps, input) => {
      const lease = resolveLease(deps.storage, c.get('identity'), input.param('id'), deps.now())
      requireWebVnc(lease)
      return c.json(await resetWebVnc(deps, lease))
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/leases/:id/webvnc/agent',
      summary: "The CLI bridge's agent WebSocket: raw RFB bytes; authenticated by a one-use ticket (bearer or `?ticket=`)",
      auth: 'none',
      websocket: true,
      params: { id: LeaseRef },
      query: WebVncAgentQuery,
    },
    (c, deps, input) => {
      if (!isUpgrade(c.req.raw)) throw new ApiError(426, 'upgrade_required', 'WebVNC agent requires a websocket upgrade')
      const lease = consumeTicket(deps.storage, presentedTicket(c.req.raw), input.param('id'), deps.now())
      requireWebVnc(lease)
      return handoffResponse('agent', relayFacts(lease))
    },
  ),
]
