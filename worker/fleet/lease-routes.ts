import {
  HeartbeatRequest,
  LeaseListQuery,
  LeaseRef,
  LeaseRequest,
  ReleaseRequest,
  ShareDeleteRequest,
  SharePutRequest,
} from '../../src/protocol/leases.js'
import { createLease, deleteShare, getShare, heartbeatLease, listLeases, putShare, releaseLease, resolveLease } from './leases.js'
import { jsonBody, pathParam, queryParams, type FleetApp, type FleetDeps } from './router.js'

/** `/v1/leases…` (coordinator-api §4.3–4.9). Handlers parse, call leases.ts, render. */
export function registerLeaseRoutes(app: FleetApp, deps: FleetDeps): void {
  app.post('/v1/leases', async (c) => {
    const body = await jsonBody(c, LeaseRequest)
    const { lease, created } = await createLease(deps, c.get('identity'), body)
    return c.json({ lease }, created ? 201 : 200)
  })

  app.get('/v1/leases', (c) => c.json(listLeases(deps.storage, c.get('identity'), queryParams(c, LeaseListQuery))))

  app.get('/v1/leases/:id', (c) => c.json({ lease: resolveLease(deps.storage, c.get('identity'), pathParam(c, 'id', LeaseRef), deps.now()) }))

  app.post('/v1/leases/:id/heartbeat', async (c) => {
    const ref = pathParam(c, 'id', LeaseRef)
    const body = await jsonBody(c, HeartbeatRequest, { optional: true })
    return c.json({ lease: await heartbeatLease(deps, c.get('identity'), ref, body) })
  })

  app.post('/v1/leases/:id/release', async (c) => {
    const ref = pathParam(c, 'id', LeaseRef)
    const body = await jsonBody(c, ReleaseRequest, { optional: true })
    return c.json({ lease: await releaseLease(deps, c.get('identity'), ref, { delete: body.delete }) })
  })

  app.get('/v1/leases/:id/share', (c) => c.json(getShare(deps, c.get('identity'), pathParam(c, 'id', LeaseRef))))
  app.put('/v1/leases/:id/share', async (c) => {
    const ref = pathParam(c, 'id', LeaseRef)
    return c.json(putShare(deps, c.get('identity'), ref, await jsonBody(c, SharePutRequest)))
  })
  app.delete('/v1/leases/:id/share', async (c) => {
    const ref = pathParam(c, 'id', LeaseRef)
    return c.json(deleteShare(deps, c.get('identity'), ref, await jsonBody(c, ShareDeleteRequest, { optional: true })))
  })
}
