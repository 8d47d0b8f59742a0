import { ApiError } from '../../src/protocol/errors.js'
import { EgressSocketQuery, EgressStatus, EgressTicketRequest, EgressTicketResponse, type EgressRole } from '../../src/protocol/egress.js'
import { LeaseRef } from '../../src/protocol/leases.js'
import { handoffResponse } from '../bridge/handoff.js'
import { consumeEgressTicket, currentSession, egressStatus, mintEgressTicket, readTicketAsk, requireEgress } from './egress.js'
import { resolveLease } from './lease-store.js'
import { defineRoute, type RouteSpec } from './route-spec.js'
import { isUpgrade } from './webvnc-routes.js'
import { presentedTicket } from './webvnc.js'

/**
 * `/v1/leases/{id}/egress/…`: tickets and status for callers who can see the lease, and the
 * two bridge sockets (host: the operator's machine; client: the lease), authenticated by a
 * one-use ticket instead of a credential. The sockets open at the lease's relay object.
 */
function socketRoute(role: EgressRole): RouteSpec {
  return defineRoute(
    {
      method: 'GET',
      path: `/v1/leases/:id/egress/${role}`,
      summary:
        role === 'host'
          ? "The egress host socket (the operator's machine): JSON frames to and from the client; one-use ticket (bearer or `?ticket=`)"
          : "The egress client socket (the lease's loopback proxy): JSON frames to and from the host; one-use ticket (bearer or `?ticket=`)",
      auth: 'none',
      websocket: true,
      params: { id: LeaseRef },
      query: EgressSocketQuery,
    },
    (c, deps, input) => {
      if (!isUpgrade(c.req.raw)) throw new ApiError(426, 'upgrade_required', 'egress bridge requires a websocket upgrade')
      const { lease, sessionID } = consumeEgressTicket(deps.storage, presentedTicket(c.req.raw), role, input.param('id'), deps.now())
      requireEgress(lease)
      const currentSessionID = currentSession(deps.storage, lease.id)?.session_id
      return handoffResponse(`egress/${role}`, { leaseID: lease.id, sessionID, currentSession: currentSessionID === sessionID })
    },
  )
}

export const EGRESS_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'POST',
      path: '/v1/leases/:id/egress/ticket',
      summary: 'A one-use egress bridge ticket (120 s) for the host or client socket of a session; the newest session becomes current',
      auth: 'user',
      params: { id: LeaseRef },
      body: EgressTicketRequest,
      response: EgressTicketResponse,
    },
    async (c, deps, input) => {
      const now = deps.now()
      const lease = resolveLease(deps.storage, c.get('identity'), input.param('id'), now)
      const json = c.req.header('content-type')?.includes('application/json') ?? false
      const body = json ? await input.body({ optional: true }) : {}
      requireEgress(lease)
      const ask = readTicketAsk(body)
      return c.json(mintEgressTicket(deps.storage, lease, ask, now))
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/leases/:id/egress/status',
      summary: "The lease's current egress session (profile, allow-list) and whether its host and client are connected",
      auth: 'user',
      params: { id: LeaseRef },
      response: EgressStatus,
    },
    async (c, deps, input) => {
      const lease = resolveLease(deps.storage, c.get('identity'), input.param('id'), deps.now())
      return c.json(await egressStatus(deps.storage, deps.env, lease))
    },
  ),
  socketRoute('host'),
  socketRoute('client'),
]
