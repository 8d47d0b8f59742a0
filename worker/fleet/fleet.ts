import { DurableObject } from 'cloudflare:workers'
import type { Env } from '../env.js'
import { providerRegistry } from '../providers/registry.js'
import { runAlarm, wakeBy } from './alarm.js'
import { onControlClose, onControlError, onControlMessage } from './control.js'
import type { FleetApp, FleetDeps } from './deps.js'
import { createFleetApp } from './routes.js'
import { migrateFleet } from './schema.js'
import { fleetStorage } from './storage.js'

/**
 * The single Durable Object that owns fleet state. Thin on purpose: requests go
 * to the Hono app built from the route table (routes.ts), the alarm to alarm.ts
 * (lease expiry, machine cleanup, run retention), sockets to the control module.
 */
export class FleetDurableObject extends DurableObject<Env> {
  readonly deps: FleetDeps
  private readonly app: FleetApp

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    const storage = fleetStorage(ctx.storage)
    // Synchronous SQL, done before the first request or alarm can run.
    migrateFleet(storage)
    this.deps = {
      storage,
      env,
      ctx,
      providers: providerRegistry({ env, storage, fetch: (input, init) => fetch(input, init) }),
      fetch: (input, init) => fetch(input, init),
      now: () => new Date(),
      wakeBy: (at) => wakeBy(ctx, at),
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
    await onControlMessage(this.deps, ws, message)
  }

  override webSocketClose(ws: WebSocket, code: number): void {
    onControlClose(this.deps, ws, code)
  }

  override webSocketError(ws: WebSocket): void {
    onControlError(this.deps, ws)
  }
}
