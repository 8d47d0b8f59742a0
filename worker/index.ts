import { Hono } from 'hono'
import type { Env } from './env.js'

export { FleetDurableObject } from './fleet/fleet.js'

const app = new Hono<{ Bindings: Env }>()

app.get('/v1/health', (c) => c.json({ ok: true, service: 'crabbox-coordinator' }))

app.all('/v1/*', (c) => {
  const stub = c.env.FLEET.get(c.env.FLEET.idFromName('default'))
  return stub.fetch(c.req.raw)
})

app.notFound((c) => c.json({ error: 'not_found', message: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404))

export default app
