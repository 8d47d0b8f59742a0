import type { WebVncEvent } from '../../src/protocol/webvnc.js'
import type { Env } from '../env.js'

/**
 * How a bridge socket reaches its relay. The Fleet object checks the request (caller,
 * lease, ticket) but must not hold the socket: screen bytes would queue behind its lease
 * and run writes. So, on success, it answers the edge with HANDOFF_HEADER naming the
 * relay operation and the facts it checked; the edge (worker/index.ts) then opens the
 * socket at the lease's BridgeRelay object. Only the Fleet object's answer can carry the
 * header, and the relay is reachable only through the edge, so a caller can forge neither.
 */
/** The header the edge passes the Fleet object's checked facts in (never a caller's). */
export const RELAY_HEADER = 'x-crabbox-relay'

/** What the Fleet object tells the relay about a request it has checked. */
export interface RelayFacts {
  leaseID: string
  /** The bridge command for this lease (the viewer's 409 names it). */
  command?: string
  /** Viewer requests: the ID the page asked for (a fresh one is minted when absent or malformed). */
  viewerID?: string
  /** Viewer requests: the caller's name as the controller label shows it. */
  label?: string
  /** Code bridge requests: the portal path and query the browser asked for. */
  path?: string
  /** Egress sockets: the session the ticket was minted for, and whether it is the lease's newest. */
  sessionID?: string
  currentSession?: boolean
}

/** The relay's sockets and events, as status needs them. */
export interface RelayState {
  /** `buffered`: bytes held for a viewer that has not claimed the agent yet. */
  agents: { id: string; viewer?: string; buffered: number }[]
  viewers: { id: string; agent: string; label: string }[]
  controllerID: string
  controllerLabel: string
  events: WebVncEvent[]
}

export interface RelayResetResult {
  bridgeWasConnected: boolean
  viewerWasConnected: boolean
  state: RelayState
}

export const HANDOFF_HEADER = 'x-crabbox-relay-handoff'

export type RelayOp = 'agent' | 'viewer' | 'code-agent' | 'code-viewer' | 'code-http' | 'egress/host' | 'egress/client'

export interface Handoff {
  op: RelayOp
  facts: RelayFacts
}

/** The Fleet object's answer to a checked upgrade: "open it at the relay". */
export function handoffResponse(op: RelayOp, facts: RelayFacts): Response {
  return new Response(null, { status: 200, headers: { [HANDOFF_HEADER]: JSON.stringify({ op, facts } satisfies Handoff) } })
}

/** The relay object of a lease. */
export function relayStub(env: Env, leaseID: string): DurableObjectStub {
  return env.BRIDGE_RELAY.get(env.BRIDGE_RELAY.idFromName(leaseID))
}

/** Calls a relay operation that answers JSON (state, reset, control) with the facts checked. */
export function callRelay(env: Env, facts: RelayFacts, op: 'state' | 'reset' | 'control'): Promise<Response> {
  return relayStub(env, facts.leaseID).fetch(`https://relay.internal/${op}`, {
    method: op === 'state' ? 'GET' : 'POST',
    headers: { [RELAY_HEADER]: JSON.stringify(facts) },
  })
}

/**
 * The edge's side: when the Fleet object handed an upgrade over, open it at the relay
 * (a fresh request: only the upgrade and the checked facts go on); otherwise the answer
 * as it is.
 */
export async function completeHandoff(request: Request, env: Env, response: Response): Promise<Response> {
  const header = response.headers.get(HANDOFF_HEADER)
  if (!header) return response
  const { op, facts } = JSON.parse(header) as Handoff
  // A proxied code bridge request without a body (worker/bridge/code-relay.ts).
  if (op === 'code-http') return codeRelayTarget(request, env, response)!()
  if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
    return Response.json({ error: 'upgrade_required', message: 'a websocket upgrade is required' }, { status: 426 })
  }
  // Code sockets keep the browser's headers (the relay forwards its allow-list of them).
  const headers = op.startsWith('code-') ? new Headers(request.headers) : new Headers()
  headers.set('upgrade', 'websocket')
  headers.set(RELAY_HEADER, JSON.stringify(facts))
  return relayStub(env, facts.leaseID).fetch(`https://relay.internal/${op}`, { headers })
}

/**
 * When the Fleet object handed a code bridge request over (`code-http`): how to send it to
 * the lease's relay, with the browser's method and headers and the body the edge passes on.
 */
export function codeRelayTarget(
  request: Request,
  env: Env,
  checked: Response,
): ((body?: ReadableStream<Uint8Array>) => Promise<Response>) | undefined {
  const header = checked.headers.get(HANDOFF_HEADER)
  if (!header) return undefined
  const { op, facts } = JSON.parse(header) as Handoff
  if (op !== 'code-http') return undefined
  const headers = new Headers(request.headers)
  headers.set(RELAY_HEADER, JSON.stringify(facts))
  return (body) =>
    relayStub(env, facts.leaseID).fetch('https://relay.internal/code-http', {
      method: request.method,
      headers,
      ...(body ? { body } : {}),
    })
}
