import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { LeaseListQuery, LeaseRef, PoolQuery, ReleaseRequest, type ProviderMachine } from '../../src/protocol/leases.js'
import { isListable } from '../providers/registry.js'
import type { Machine } from '../providers/types.js'
import { listLeases, releaseLease } from './leases.js'
import { jsonBody, pathParam, queryParams, requireAdmin, type FleetApp, type FleetDeps } from './router.js'

function toProviderMachine(machine: Machine): ProviderMachine {
  return {
    provider: machine.provider,
    id: /^\d+$/.test(machine.id) ? Number(machine.id) : machine.provider === 'static' ? machine.id : 0,
    cloudID: machine.id,
    ...(machine.region ? { region: machine.region } : {}),
    name: machine.name,
    status: machine.labels.status ?? 'running',
    serverType: machine.serverType,
    host: machine.host,
    labels: machine.labels,
  }
}

/** Operator routes (§4.23): 403 `admin token required` for everyone else, before routing. */
export function registerAdminRoutes(app: FleetApp, deps: FleetDeps): void {
  app.use('/v1/admin/*', async (c, next) => {
    requireAdmin(c)
    await next()
  })
  app.use('/v1/pool', async (c, next) => {
    requireAdmin(c)
    await next()
  })

  app.get('/v1/pool', async (c) => {
    const { provider } = queryParams(c, PoolQuery)
    const names = provider ? [provider] : deps.providers.names()
    const machines: ProviderMachine[] = []
    for (const name of names) {
      const instance = deps.providers.get(name)
      if (!isListable(instance)) continue
      try {
        machines.push(...(await instance.list()).map(toProviderMachine))
      } catch (error) {
        // Like the reference: one provider's outage does not hide the others, unless asked for by name.
        if (provider) throw new ApiError(502, ErrorCode.providerFailed, `${name}: ${error instanceof Error ? error.message : String(error)}`)
      }
    }
    return c.json({ machines })
  })

  app.get('/v1/admin/leases', (c) => c.json(listLeases(deps.storage, c.get('identity'), queryParams(c, LeaseListQuery))))

  app.post('/v1/admin/leases/:id/release', async (c) => {
    const ref = pathParam(c, 'id', LeaseRef)
    const body = await jsonBody(c, ReleaseRequest, { optional: true })
    return c.json({ lease: await releaseLease(deps, c.get('identity'), ref, { delete: body.delete }) })
  })

  app.post('/v1/admin/leases/:id/delete', async (c) => {
    const ref = pathParam(c, 'id', LeaseRef)
    return c.json({ lease: await releaseLease(deps, c.get('identity'), ref, { delete: true, forgetKeep: true }) })
  })
}
