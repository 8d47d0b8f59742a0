import type { Context } from 'hono'
import { Hono } from 'hono'
import * as v from 'valibot'
import { ApiError, ErrorCode, describeIssues } from '../../src/protocol/errors.js'
import { identityFrom, type Identity } from '../auth/identity.js'
import type { Env } from '../env.js'
import type { ProviderRegistry } from '../providers/registry.js'
import { registerAdminRoutes } from './admin-routes.js'
import { registerLeaseRoutes } from './lease-routes.js'
import { registerControlRoutes } from './control.js'
import { registerRunRoutes } from './run-routes.js'
import { registerUsageRoutes } from './usage.js'
import { registerGithubRoutes } from '../auth/github.js'
import type { FleetStorage } from './storage.js'

/**
 * The Hono app inside the Fleet object. Domain modules register their routes
 * on it with `registerXRoutes(app, deps)`; handlers read the caller from
 * `c.get('identity')` and throw `ApiError` for clean 4xx/5xx bodies.
 */
export type FleetEnv = { Bindings: Env; Variables: { identity: Identity } }
export type FleetApp = Hono<FleetEnv>
export type FleetContext = Context<FleetEnv>

/** Optional behaviour other modules plug into the object (set from their register function). */
export interface FleetHooks {
  /**
   * Retention, called from the alarm: prune at most `budget` old records.
   * Returns when the alarm should next call it (ms epoch), or undefined for "nothing pending".
   */
  prune?: (storage: FleetStorage, now: Date, budget: number) => { nextAt?: number } | Promise<{ nextAt?: number }>
  webSocketMessage?: (ws: WebSocket, message: string | ArrayBuffer) => void | Promise<void>
  webSocketClose?: (ws: WebSocket, code: number, reason: string, wasClean: boolean) => void | Promise<void>
  webSocketError?: (ws: WebSocket, error: unknown) => void | Promise<void>
}

export interface FleetDeps {
  storage: FleetStorage
  env: Env
  ctx: DurableObjectState
  providers: ProviderRegistry
  now(): Date
  /** Makes sure the object's alarm fires no later than `at` (ms epoch). */
  wakeBy(at: number): Promise<void>
  hooks: FleetHooks
}

export function createFleetApp(deps: FleetDeps): FleetApp {
  const app: FleetApp = new Hono<FleetEnv>({ strict: false }) // trailing slashes are ignored, like the reference

  app.onError(async (error, c) => {
    // Answering before the body was read: drain it, or the edge's pipe into this object errors.
    if (c.req.raw.body && !c.req.raw.bodyUsed) await c.req.raw.arrayBuffer().catch(() => undefined)
    if (error instanceof ApiError) return c.json(error.body, error.status as 400)
    console.error('fleet error', error)
    return c.json({ error: ErrorCode.internal, message: 'internal error; the broker log has details' }, 500)
  })
  app.notFound((c) => c.json({ error: ErrorCode.notFound, message: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404))

  app.use('*', async (c, next) => {
    c.set('identity', identityFrom(c.req.raw))
    await next()
  })

  app.get('/v1/whoami', (c) => {
    const identity = c.get('identity')
    return c.json({ owner: identity.owner, org: identity.org, auth: identity.auth, admin: identity.admin, ...(identity.githubLogin ? { login: identity.githubLogin } : {}) })
  })

  registerLeaseRoutes(app, deps)
  registerAdminRoutes(app, deps)
  // ---- part 2 registers here (runs, usage, control, GitHub login): ----
  registerRunRoutes(app, deps), registerControlRoutes(app, deps), registerUsageRoutes(app, deps), registerGithubRoutes(app, deps)
  // ---------------------------------------------------------------------
  return app
}

// ---- request parsing helpers (every body, query and path param goes through a schema) ----

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024

async function readBody(c: FleetContext, maxBytes: number): Promise<string> {
  const declared = Number(c.req.header('content-length') ?? '0')
  if (declared > maxBytes) {
    // Drained (bounded by the edge limit) rather than cancelled: see onError.
    await c.req.raw.arrayBuffer().catch(() => undefined)
    throw new ApiError(413, ErrorCode.payloadTooLarge, `request body is larger than ${maxBytes} bytes`)
  }
  const text = await c.req.text()
  if (new TextEncoder().encode(text).byteLength > maxBytes) throw new ApiError(413, ErrorCode.payloadTooLarge, `request body is larger than ${maxBytes} bytes`)
  return text
}

function validate<S extends v.GenericSchema>(schema: S, value: unknown, where: string): v.InferOutput<S> {
  const result = v.safeParse(schema, value)
  if (!result.success) throw new ApiError(400, ErrorCode.invalidRequest, `invalid ${where}: ${describeIssues(result.issues)}`)
  return result.output
}

/**
 * Parses and validates a JSON body. With `optional`, an empty body counts as `{}`
 * (heartbeat, release and share DELETE accept no body, like the reference).
 */
export async function jsonBody<S extends v.GenericSchema>(
  c: FleetContext,
  schema: S,
  options: { maxBytes?: number; optional?: boolean } = {},
): Promise<v.InferOutput<S>> {
  const text = await readBody(c, options.maxBytes ?? DEFAULT_MAX_BODY_BYTES)
  let value: unknown
  if (options.optional && text.trim() === '') value = {}
  else {
    try {
      value = JSON.parse(text)
    } catch {
      throw new ApiError(400, ErrorCode.invalidJson, text.trim() === '' ? 'a JSON request body is required' : 'the request body is not valid JSON')
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ApiError(400, ErrorCode.invalidJson, 'the request body must be a JSON object')
  return validate(schema, value, 'request body')
}

export function queryParams<S extends v.GenericSchema>(c: FleetContext, schema: S): v.InferOutput<S> {
  return validate(schema, c.req.query(), 'query')
}

export function pathParam<S extends v.GenericSchema>(c: FleetContext, name: string, schema: S): v.InferOutput<S> {
  return validate(schema, c.req.param(name), `path parameter ${name}`)
}

/** Admin routes answer 403 for everyone else (checked before the route runs). */
export function requireAdmin(c: FleetContext): void {
  if (!c.get('identity').admin) throw new ApiError(403, ErrorCode.forbidden, 'admin token required')
}
