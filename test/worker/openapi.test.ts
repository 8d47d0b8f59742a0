import { describe, expect, it } from 'vitest'
import { openApiResponse } from '../../worker/openapi.js'
import { CURRENT_ROUTES } from '../unit/fixtures/current-routes.js'

// The document is served by the worker: build it inside workerd, not only in Node.
describe('openApiResponse in workerd', () => {
  it('answers the OpenAPI 3.1 document as JSON', async () => {
    const response = openApiResponse(CURRENT_ROUTES, { version: '0.1.0' })
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8')
    const body = (await response.json()) as { openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, unknown> } }
    expect(body.openapi).toBe('3.1.0')
    expect(Object.keys(body.paths)).toContain('/v1/leases/{id}/heartbeat')
    expect(body.components.schemas.Error).toBeDefined()
  })
})
