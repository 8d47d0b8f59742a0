import { SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { API_ROUTES, createFleetApp } from '../../worker/fleet/routes.js'
import type { FleetDeps } from '../../worker/fleet/deps.js'
import { openApiPath } from '../../worker/openapi.js'

type Document = {
  openapi: string
  paths: Record<string, Record<string, unknown>>
  servers?: { url: string }[]
  components: { schemas: Record<string, unknown> }
}

// The document is built and served by the worker itself (inside workerd), without a credential.
describe('GET /v1/openapi.json', () => {
  it('serves the OpenAPI 3.1 document to a caller with no token', async () => {
    const response = await SELF.fetch('https://broker.test/v1/openapi.json', { headers: { host: 'evil.example' } })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8')
    const body = (await response.json()) as Document
    expect(body.openapi).toBe('3.1.0')
    expect(body.components.schemas.Error).toBeDefined()
    // The server URL never comes from the Host header.
    expect(JSON.stringify(body.servers ?? [])).not.toContain('evil.example')
  })

  it('documents every route the Fleet app answers, and the edge routes', async () => {
    const body = (await (await SELF.fetch('https://broker.test/v1/openapi.json')).json()) as Document
    const documented = new Set(
      Object.entries(body.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`)),
    )
    // The routes Hono really registered (middleware excluded), not the table's own idea of itself.
    const app = createFleetApp({} as FleetDeps)
    const websocketPaths = new Set(API_ROUTES.filter((route) => route.websocket).map((route) => route.path))
    const registered = app.routes
      .filter((route) => route.method !== 'ALL' || websocketPaths.has(route.path))
      .map((route) => `${route.method === 'ALL' ? 'GET' : route.method} ${openApiPath(route.path)}`)
    expect(registered.length).toBeGreaterThan(20)
    for (const route of registered) expect(documented, route).toContain(route)
    expect(documented).toContain('GET /v1/health')
    expect(documented).toContain('GET /v1/openapi.json')
  })
})
