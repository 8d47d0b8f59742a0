import { ControlClientMessage, ControlServerMessage } from '../../src/protocol/control.js'
import { openControlSocket } from './control.js'
import { defineRoute, type RouteSpec } from './route-spec.js'

/** `/v1/control`: answers every method, 426 unless it is a WebSocket upgrade. */
export const CONTROL_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/v1/control',
      summary: 'Open the control WebSocket (run events, heartbeats); portal pages may use their session cookie instead',
      auth: 'user',
      websocket: true,
      body: ControlClientMessage,
      response: ControlServerMessage,
    },
    (c, deps) => openControlSocket(deps.ctx, c.req.raw, c.get('identity')),
  ),
]
