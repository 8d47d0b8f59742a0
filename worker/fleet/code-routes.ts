import { CodeAgentQuery, CodeTicketResponse } from '../../src/protocol/code.js'
import { ApiError } from '../../src/protocol/errors.js'
import { LeaseRef } from '../../src/protocol/leases.js'
import { handoffResponse } from '../bridge/handoff.js'
import { consumeCodeTicket, mintCodeTicket, requireCode } from './code.js'
import { resolveLease } from './lease-store.js'
import { defineRoute, type RouteSpec } from './route-spec.js'
import { isUpgrade } from './webvnc-routes.js'
import { presentedTicket } from './webvnc.js'

/**
 * `/v1/leases/{id}/code/…`: one-use tickets for callers who can see the lease, and the
 * `crabbox code` bridge's agent socket, authenticated by a ticket instead of a credential.
 * The socket itself is opened at the lease's relay object (worker/bridge/code-relay.ts).
 */
export const CODE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'POST',
      path: '/v1/leases/:id/code/ticket',
      summary: 'A one-use code bridge ticket (120 s) for the agent socket',
      auth: 'user',
      params: { id: LeaseRef },
      response: CodeTicketResponse,
    },
    (c, deps, input) => {
      const now = deps.now()
      const lease = resolveLease(deps.storage, c.get('identity'), input.param('id'), now)
      requireCode(lease)
      return c.json(mintCodeTicket(deps.storage, lease, now))
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/leases/:id/code/agent',
      summary:
        "The code bridge's agent WebSocket (JSON frames carrying the portal's HTTP requests and WebSockets); a newer agent replaces the old one; authenticated by a one-use ticket",
      auth: 'none',
      websocket: true,
      params: { id: LeaseRef },
      query: CodeAgentQuery,
    },
    (c, deps, input) => {
      if (!isUpgrade(c.req.raw)) throw new ApiError(426, 'upgrade_required', 'code bridge requires a websocket upgrade')
      const lease = consumeCodeTicket(deps.storage, presentedTicket(c.req.raw), input.param('id'), deps.now())
      requireCode(lease)
      return handoffResponse('code-agent', { leaseID: lease.id })
    },
  ),
]
