import { DurableObject } from 'cloudflare:workers'
import type { Env } from '../env.js'
import { providerRegistry } from '../providers/registry.js'
import { runAlarm, wakeBy } from './alarm.js'
import { ensureLeaseSchema } from './leases.js'
import { createFleetApp, type FleetApp, type FleetDeps } from './router.js'
import { fleetStorage } from './storage.js'

/**
 * The single Durable Object that owns fleet state. Thin on purpose: requests go
 * to the Hono app in router.ts, the alarm to alarm.ts, sockets to the hooks the
 * control module registers; each domain lives in its own module beside this one.
 */
export class FleetDurableObject extends DurableObject<Env> {
  readonly deps: FleetDeps
  private readonly app: FleetApp

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    const storage = fleetStorage(ctx.storage)
    ensureLeaseSchema(storage)
    this.deps = {
      storage,
      env,
      ctx,
      providers: providerRegistry({ env, storage, fetch: (input, init) => fetch(input, init) }),
      now: () => new Date(),
      wakeBy: (at) => wakeBy(ctx, at),
      hooks: {},
    }
    this.app = createFleetApp(this.deps)
  }

  override fetch(request: Request): Promise<Response> {
    return Promise.resolve(this.app.fetch(request, this.env))
  }

  override async alarm(): Promise<void> {
    await runAlarm(this.deps)
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    await this.deps.hooks.webSocketMessage?.(ws, message)
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean): Promise<void> {
    await this.deps.hooks.webSocketClose?.(ws, code, reason, wasClean)
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    await this.deps.hooks.webSocketError?.(ws, error)
  }
}
