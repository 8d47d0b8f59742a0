import { DurableObject } from 'cloudflare:workers'
import type { Env } from '../env.js'

/**
 * The single Durable Object that owns fleet state. Thin on purpose: each domain
 * (leases, runs, control, alarm, usage) lives in its own module beside this one.
 */
export class FleetDurableObject extends DurableObject<Env> {
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url)
    return Response.json({ error: 'not_found', message: `no route for ${request.method} ${url.pathname}` }, { status: 404 })
  }
}
