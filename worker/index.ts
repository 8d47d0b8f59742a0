import { Hono } from 'hono'
import { ApiError, ErrorCode } from '../src/protocol/errors.js'
import { authenticate } from './auth/authenticate.js'
import { identityHeaders, STRIPPED_HEADERS, type Identity } from './auth/identity.js'
import { setting, type Env } from './env.js'
import { API_ROUTES } from './fleet/routes.js'
import { API_VERSION, openApiResponse } from './openapi.js'

export { FleetDurableObject } from './fleet/fleet.js'

/** Largest request body the edge forwards; routes set tighter limits inside the object. */
const MAX_EDGE_BODY_BYTES = 16 * 1024 * 1024

type Edge = { Bindings: Env; Variables: { identity?: Identity } }
const app = new Hono<Edge>({ strict: false })

/**
 * Forwards to the single Fleet object with the caller's identity headers
 * replaced by ours (or removed, for unauthenticated routes).
 */
function forward(request: Request, env: Env, identity?: Identity): Promise<Response> {
  const headers = new Headers(request.headers)
  for (const name of STRIPPED_HEADERS) headers.delete(name)
  if (identity) for (const [name, value] of Object.entries(identityHeaders(identity))) headers.set(name, value)
  const stub = env.FLEET.get(env.FLEET.idFromName('default'))
  return stub.fetch(new Request(request, { headers }))
}

app.onError((error, c) => {
  if (error instanceof ApiError) return c.json(error.body, error.status as 400)
  console.error('edge error', error)
  return c.json({ error: ErrorCode.internal, message: 'internal error' }, 500)
})

app.notFound((c) => c.json({ error: ErrorCode.notFound, message: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404))

// Oversized bodies stop here, before authentication or the object spend work on them.
app.use('/v1/*', async (c, next) => {
  const length = Number(c.req.header('content-length') ?? '0')
  if (length > MAX_EDGE_BODY_BYTES) {
    // Drop the unread body so the runtime does not keep the upload open.
    await c.req.raw.body?.cancel().catch(() => undefined)
    throw new ApiError(413, ErrorCode.payloadTooLarge, `request body is larger than ${MAX_EDGE_BODY_BYTES} bytes`)
  }
  await next()
})

// ---- unauthenticated --------------------------------------------------------
app.get('/v1/health', (c) => c.json({ ok: true, service: 'crabbox-coordinator' }))
// The server URL comes from configuration only: the Host header is the caller's to choose.
app.get('/v1/openapi.json', (c) => openApiResponse(API_ROUTES, { version: API_VERSION, serverUrl: setting(c.env, 'CRABBOX_PUBLIC_URL') }))
// GitHub login (start, callback, poll) authenticates with its own poll secret.
app.all('/v1/auth/*', (c) => forward(c.req.raw, c.env))

// ---- everything else under /v1 needs a credential -----------------------------
app.use('/v1/*', async (c, next) => {
  const identity = await authenticate(c.req.raw, c.env)
  if (!identity) {
    await c.req.raw.body?.cancel().catch(() => undefined)
    return c.json(
      { error: ErrorCode.unauthorized, message: 'a valid bearer token is required; run `crabbox login` or set broker.token' },
      401,
    )
  }
  c.set('identity', identity)
  await next()
})

// Every other /v1 route is the Fleet object's (worker/fleet/routes.ts lists them all).
app.all('/v1/*', (c) => forward(c.req.raw, c.env, c.get('identity')))

export default app
