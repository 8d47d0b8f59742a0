import { raw } from 'hono/html'
import { CodeHealth } from '../../src/protocol/code.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { LeaseRef } from '../../src/protocol/leases.js'
import { handoffResponse } from '../bridge/handoff.js'
import { codeBridgeCommand, codeHealth, codeRelayState, requireCode } from '../fleet/code.js'
import type { FleetContext, FleetDeps } from '../fleet/deps.js'
import { defineRoute, type RouteSpec } from '../fleet/route-spec.js'
import { isUpgrade } from '../fleet/webvnc-routes.js'
import { CopyCommand } from './layout.js'
import { visibleLease } from './lease-page.js'
import { page, portalCaller, type PortalCaller } from './page.js'
import { publicOrigin, sameOriginRequest } from './session.js'

/**
 * The portal's code bridge: `/portal/leases/{id}/code/…`. `code/health` answers JSON; with
 * no bridge connected every other path is the waiting page (the bridge command, and a
 * script that polls health every 2 s and reloads once the bridge is up); with one, HTTP
 * requests and WebSockets are handed to the lease's relay object (worker/bridge/code-relay.ts),
 * which tunnels them to code-server on the runner through the bridge's agent socket.
 */

/** Polls health every 2 s; reloads when the bridge is connected. */
const WAITING_SCRIPT = `(() => {
  const health = location.pathname.replace(/\\/code(\\/.*)?$/, '/code/health')
  const status = document.getElementById('code-status')
  const poll = async () => {
    try {
      const response = await fetch(health, { credentials: 'same-origin', cache: 'no-store' })
      const body = await response.json()
      if (body.code && body.code.agentConnected) return location.reload()
      if (status) status.textContent = 'Waiting for the code bridge to connect…'
    } catch {
      if (status) status.textContent = 'Cannot reach the broker; retrying…'
    }
    setTimeout(poll, 2000)
  }
  setTimeout(poll, 2000)
})()`

const HTML_PAGE_NOTE = 'HTML: the waiting page, or what code-server answers'

/**
 * A session cookie is honoured only from the broker's own pages: for a WebSocket, `Origin`
 * must be the broker's; for a request that changes something (not GET/HEAD), the browser
 * must say it came from this origin. (The editor's own requests always do.)
 */
function refuseCrossOrigin(c: FleetContext, caller: PortalCaller): void {
  if (caller.via !== 'cookie') return
  const request = c.req.raw
  const safe = request.method === 'GET' || request.method === 'HEAD'
  if (isUpgrade(request)) {
    if (request.headers.get('origin') === publicOrigin(c.env, request)) return
  } else if (safe || sameOriginRequest(request, c.env)) return
  throw new ApiError(403, ErrorCode.forbidden, 'the code bridge takes the session cookie only from pages of this broker')
}

async function codeProxy(c: FleetContext, deps: FleetDeps, ref: string): Promise<Response> {
  const caller = portalCaller(c)
  const lease = visibleLease(deps, caller, ref)
  requireCode(lease)
  refuseCrossOrigin(c, caller)
  const url = new URL(c.req.url)
  // code-server's pages use relative URLs: the editor lives under `…/code/`.
  if (/\/code$/.test(url.pathname) && c.req.method === 'GET' && !isUpgrade(c.req.raw))
    return c.redirect(`${url.pathname}/${url.search}`, 302)
  const state = await codeRelayState(c.env, lease)
  if (!state.agentConnected) {
    const command = codeBridgeCommand(lease)
    const body = (
      <section class="card" aria-labelledby="code-title">
        <h1 id="code-title">Code: {lease.slug || lease.id}</h1>
        <p id="code-status" role="status" aria-live="polite">
          Waiting for the code bridge to connect…
        </p>
        <p>Start the bridge on a machine that can reach the lease; this page reloads once it connects:</p>
        <CopyCommand command={command} label="code bridge command" />
      </section>
    )
    const tail = <script nonce={caller.nonce}>{raw(WAITING_SCRIPT)}</script>
    return page(c, caller, 'Waiting for the code bridge', body, { tail })
  }
  const path = `${url.pathname}${url.search}`
  return handoffResponse(isUpgrade(c.req.raw) ? 'code-viewer' : 'code-http', { leaseID: lease.id, path })
}

const proxyRoute = (method: 'GET' | 'POST' | 'PUT' | 'DELETE') =>
  defineRoute(
    {
      method,
      path: '/portal/leases/:id/code/*',
      summary: `The code bridge: ${method} proxied to code-server on the runner through the bridge (${HTML_PAGE_NOTE}${
        method === 'GET' ? '; a WebSocket upgrade is tunnelled too' : ''
      })`,
      auth: 'user',
      params: { id: LeaseRef },
    },
    (c, deps, input) => codeProxy(c, deps, input.param('id')),
  )

export const CODE_PORTAL_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/leases/:id/code/health',
      summary: 'Code bridge health for the waiting page (JSON): the lease and whether the bridge is connected',
      auth: 'user',
      params: { id: LeaseRef },
      response: CodeHealth,
    },
    async (c, deps, input) => {
      const lease = visibleLease(deps, portalCaller(c), input.param('id'))
      return c.json(codeHealth(lease, await codeRelayState(c.env, lease)))
    },
  ),
  proxyRoute('GET'),
  proxyRoute('POST'),
  proxyRoute('PUT'),
  proxyRoute('DELETE'),
]
