import type { Context, Hono } from 'hono'
import type { Identity } from '../auth/identity.js'
import type { Env } from '../env.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { FleetStorage } from './storage.js'

/**
 * What every part of the Fleet object is handed: the Hono types of its app and
 * the dependencies route handlers and domain functions receive. Handlers read the
 * caller from `c.get('identity')` and throw `ApiError` for clean 4xx/5xx bodies.
 */
export type FleetEnv = { Bindings: Env; Variables: { identity: Identity } }
export type FleetApp = Hono<FleetEnv>
export type FleetContext = Context<FleetEnv>

export interface FleetDeps {
  storage: FleetStorage
  env: Env
  ctx: DurableObjectState
  providers: ProviderRegistry
  now(): Date
  /** Outbound fetch for the APIs the object calls itself (the Tailscale API); tests swap in a fake. */
  fetch: typeof fetch
  /** Makes sure the object's alarm fires no later than `at` (ms epoch). */
  wakeBy(at: number): Promise<void>
}
