import { Hono } from 'hono'
import { ApiError, ErrorCode } from '../src/protocol/errors.js'
import { getArtifact, putArtifact } from './artifacts/objects.js'
import { authenticate } from './auth/authenticate.js'
import { bodyTooLarge, declaresMoreThan, MAX_BODY_BYTES } from './body-limit.js'
import { codeRelayTarget, completeHandoff } from './bridge/handoff.js'
import { isCodeProxyPath, withoutBody } from './bridge/code-edge.js'
import { answerAfter, answerUnread, forwardBody } from './edge-body.js'
import { identityHeaders, STRIPPED_HEADERS, type Identity } from './auth/identity.js'
import { setting, type Env } from './env.js'
import { API_ROUTES } from './fleet/routes.js'
import { API_VERSION, openApiResponse } from './openapi.js'
import { controlCookieIdentity } from './portal/control-auth.js'
import { portalEdge } from './portal/edge.js'
import { PORTAL_HEADERS } from './portal/session.js'

export { FleetDurableObject } from './fleet/fleet.js'
export { BridgeRelay } from './bridge/relay.js'

type Edge = { Bindings: Env; Variables: { identity?: Identity } }
const app = new Hono<Edge>({ strict: false })

/**
 * Forwards to the single Fleet object with the caller's identity headers
 * replaced by ours (or removed, for unauthenticated routes), plus `extra` (the
 * portal's headers, which callers cannot set either). The body goes on as a
 * stream, counted whatever its framing: past MAX_BODY_BYTES the upload is cancelled
 * and the caller gets 413 whatever the object made of it (edge-body.ts says how).
 */
async function forward(request: Request, env: Env, identity?: Identity, extra: Record<string, string> = {}): Promise<Response> {
  const headers = new Headers(request.headers)
  for (const name of [...STRIPPED_HEADERS, ...PORTAL_HEADERS]) headers.delete(name)
  if (identity) for (const [name, value] of Object.entries(identityHeaders(identity))) headers.set(name, value)
  for (const [name, value] of Object.entries(extra)) headers.set(name, value)
  const stub = env.FLEET.get(env.FLEET.idFromName('default'))
  // A bridge socket the object has checked opens at the lease's relay object (worker/bridge/).
  if (!request.body) return completeHandoff(request, env, await stub.fetch(new Request(request, { headers })))
  let send = (body: ReadableStream<Uint8Array>) => stub.fetch(new Request(request, { headers, body }))
  // A code bridge request is checked without its body, which goes on to the lease's relay (worker/bridge/code-relay.ts).
  if (isCodeProxyPath(request)) {
    const checked = await stub.fetch(withoutBody(request, headers))
    const relay = codeRelayTarget(request, env, checked)
    if (!relay) return answerUnread(checked, request)
    send = relay
  }
  const upload = forwardBody(request.body)
  let response: Response
  try {
    response = await send(upload.body)
  } catch (error) {
    upload.answered()
    if (upload.exceeded()) throw bodyTooLarge(MAX_BODY_BYTES)
    throw error
  }
  upload.answered()
  if (upload.exceeded()) {
    await response.body?.cancel().catch(() => undefined)
    throw bodyTooLarge(MAX_BODY_BYTES)
  }
  if (!upload.reading()) return response
  // The object answered before the end of the upload: an error is answered while the
  // edge lingers; anything else (a route that ignores bodies) just stops the upload.
  if (response.status >= 400 && !response.webSocket) return answerAfter(response, upload.done)
  upload.stop()
  return response
}

app.onError((error, c) => {
  if (error instanceof ApiError) return c.json(error.body, error.status as 400)
  console.error('edge error', error)
  return c.json({ error: ErrorCode.internal, message: 'internal error' }, 500)
})

app.notFound((c) => c.json({ error: ErrorCode.notFound, message: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404))

// Signed artifact links (worker/artifacts/): streamed straight to and from R2, before the
// body limit below (an artifact may be up to 1 GiB) and without a bearer token.
app.put('/v1/artifacts/objects/*', (c) => putArtifact(c.req.raw, c.env))
app.get('/v1/artifacts/objects/*', (c) => getArtifact(c.req.raw, c.env))

// Oversized bodies stop here, before authentication or the object spend work on them.
// A chunked body declares no length: forward() counts it off the stream instead.
app.use('/v1/*', async (c, next) => {
  if (declaresMoreThan(c.req.raw, MAX_BODY_BYTES)) {
    const error = bodyTooLarge(MAX_BODY_BYTES)
    return answerUnread(c.json(error.body, 413), c.req.raw)
  }
  await next()
})

// ---- unauthenticated --------------------------------------------------------
app.get('/v1/health', (c) => c.json({ ok: true, service: 'crabbox-coordinator' }))
// The server URL comes from configuration only: the Host header is the caller's to choose.
app.get('/v1/openapi.json', (c) => openApiResponse(API_ROUTES, { version: API_VERSION, serverUrl: setting(c.env, 'CRABBOX_PUBLIC_URL') }))
// GitHub login (start, callback, poll) authenticates with its own poll secret.
app.all('/v1/auth/*', (c) => forward(c.req.raw, c.env))

// ---- the portal: pages for people (worker/portal/) --------------------------------
app.get('/', (c) => c.redirect('/portal', 302))
// A bearer token or the session cookie; signed out, a page redirects to login (API routes answer 401).
app.all('/portal', (c) => portalEdge(c.req.raw, c.env, forward))
app.all('/portal/*', (c) => portalEdge(c.req.raw, c.env, forward))

// The control socket also takes the portal's session cookie, from the broker's own pages only
// (worker/portal/control-auth.ts); anything else goes on to the bearer check below.
app.get('/v1/control', async (c, next) => {
  const cookie = await controlCookieIdentity(c.req.raw, c.env)
  if (!cookie) return next()
  if ('refused' in cookie) {
    return c.json(
      { error: ErrorCode.forbidden, message: 'the control socket takes the session cookie only from the portal pages of this broker' },
      403,
    )
  }
  return forward(c.req.raw, c.env, cookie.identity)
})

// The WebVNC bridge's agent socket authenticates with its one-use ticket (the Fleet object checks it).
app.all('/v1/leases/:id/webvnc/agent', (c) => forward(c.req.raw, c.env))
// So does the code bridge's agent socket.
app.all('/v1/leases/:id/code/agent', (c) => forward(c.req.raw, c.env))
// So do the egress bridge's two sockets.
app.all('/v1/leases/:id/egress/host', (c) => forward(c.req.raw, c.env))
app.all('/v1/leases/:id/egress/client', (c) => forward(c.req.raw, c.env))

// ---- everything else under /v1 needs a credential -----------------------------
app.use('/v1/*', async (c, next) => {
  const identity = await authenticate(c.req.raw, c.env)
  if (!identity) {
    return answerUnread(
      c.json({ error: ErrorCode.unauthorized, message: 'a valid bearer token is required; run `crabbox login` or set broker.token' }, 401),
      c.req.raw,
    )
  }
  c.set('identity', identity)
  await next()
})

// Every other /v1 route is the Fleet object's (worker/fleet/routes.ts lists them all).
app.all('/v1/*', (c) => forward(c.req.raw, c.env, c.get('identity')))

export default app
