import { EGRESS_CLOSE, EgressCloseReason, type EgressRole } from '../../src/protocol/egress.js'
import type { RelayFacts } from './handoff.js'

/**
 * Mediated egress in the lease's relay object (relay.ts hands `/egress/…` and egress sockets
 * here). A session has at most one host socket (the operator's machine) and one client socket
 * (the lease); frames go opaquely between the two. A socket of the same role and session
 * replaces the old one (1012); a socket of the lease's newest session closes the sockets of
 * every other session (1012); one side leaving closes the other (1011), so both halves dial
 * again with fresh tickets; releasing the lease closes them all (1000). Frames for a side
 * that is not connected are dropped: the CLI halves time out and answer the proxy request.
 */

export type EgressAttachment = { kind: 'egress'; role: EgressRole; sessionID: string; closed?: boolean }

const CLOSING = 2
const CLOSED = 3
const json = (body: unknown, status = 200) => Response.json(body, { status })
const tag = (sessionID: string, role: EgressRole) => `egress:${sessionID}:${role}`

function live(ctx: DurableObjectState, name: string): WebSocket[] {
  return ctx
    .getWebSockets(name)
    .filter(
      (ws) => ws.readyState !== CLOSING && ws.readyState !== CLOSED && !(ws.deserializeAttachment() as EgressAttachment | null)?.closed,
    )
}

/** Closes from this side: marked first, so its own close event does not touch the peer. */
function closeSocket(ws: WebSocket, code: number, reason: string): void {
  const self = ws.deserializeAttachment() as EgressAttachment
  ws.serializeAttachment({ ...self, closed: true } satisfies EgressAttachment)
  try {
    ws.close(code, reason)
  } catch {
    // already closed
  }
}

function open(ctx: DurableObjectState, role: EgressRole, facts: RelayFacts): Response {
  const sessionID = facts.sessionID ?? ''
  for (const old of live(ctx, tag(sessionID, role))) closeSocket(old, EGRESS_CLOSE.replaced, EgressCloseReason.replacedSocket)
  if (facts.currentSession) {
    for (const ws of live(ctx, 'egress')) {
      if ((ws.deserializeAttachment() as EgressAttachment).sessionID !== sessionID) {
        closeSocket(ws, EGRESS_CLOSE.replaced, EgressCloseReason.replacedSession)
      }
    }
  }
  const { 0: client, 1: server } = new WebSocketPair()
  ctx.acceptWebSocket(server, ['egress', tag(sessionID, role)])
  server.serializeAttachment({ kind: 'egress', role, sessionID } satisfies EgressAttachment)
  return new Response(null, { status: 101, webSocket: client })
}

/** `/egress/host`, `/egress/client` (upgrades), `/egress/state`, `/egress/close`. */
export function egressFetch(ctx: DurableObjectState, path: string, facts: RelayFacts): Response {
  switch (path) {
    case '/egress/host':
      return open(ctx, 'host', facts)
    case '/egress/client':
      return open(ctx, 'client', facts)
    case '/egress/state':
      return json({
        sockets: live(ctx, 'egress').map((ws) =>
          (({ role, sessionID }) => ({ role, sessionID }))(ws.deserializeAttachment() as EgressAttachment),
        ),
      })
    case '/egress/close': {
      const sockets = live(ctx, 'egress')
      for (const ws of sockets) closeSocket(ws, EGRESS_CLOSE.released, EgressCloseReason.released)
      return json({ closed: sockets.length })
    }
    default:
      return json({ error: 'not_found' }, 404)
  }
}

export function egressMessage(ctx: DurableObjectState, self: EgressAttachment, message: string | ArrayBuffer): void {
  const peer = live(ctx, tag(self.sessionID, self.role === 'host' ? 'client' : 'host'))[0]
  peer?.send(message)
}

/** A socket closed by its peer: the other side of its session goes too. */
export function egressGone(ctx: DurableObjectState, ws: WebSocket, self: EgressAttachment): void {
  ws.serializeAttachment({ ...self, closed: true } satisfies EgressAttachment)
  const other = self.role === 'host' ? 'client' : 'host'
  const reason = self.role === 'host' ? EgressCloseReason.hostGone : EgressCloseReason.clientGone
  for (const peer of live(ctx, tag(self.sessionID, other))) closeSocket(peer, EGRESS_CLOSE.peerGone, reason)
}
