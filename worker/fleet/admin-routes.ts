import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import {
  LeaseListQuery,
  LeaseListResponse,
  LeaseRef,
  LeaseResponse,
  PoolQuery,
  PoolResponse,
  ReleaseRequest,
  type ProviderMachine,
} from '../../src/protocol/leases.js'
import { isListable } from '../providers/registry.js'
import type { Machine } from '../providers/types.js'
import { listLeases } from './lease-store.js'
import { releaseLease } from './leases.js'
import { defineRoute, type RouteSpec } from './route-spec.js'

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

/**
 * Operator routes. Everyone else gets 403 `admin token required`, before routing:
 * the app guards these prefixes for any method and path below them.
 */
export const ADMIN_PREFIXES = ['/v1/admin/*', '/v1/pool'] as const

export const ADMIN_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/v1/pool',
      summary: "Machines the providers report (each provider's own list)",
      auth: 'admin',
      query: PoolQuery,
      response: PoolResponse,
    },
    async (c, deps, input) => {
      const { provider } = input.query()
      const names = provider ? [provider] : deps.providers.names()
      const machines: ProviderMachine[] = []
      for (const name of names) {
        const instance = deps.providers.get(name)
        if (!isListable(instance)) continue
        try {
          machines.push(...(await instance.list()).map(toProviderMachine))
        } catch (error) {
          // One provider's outage does not hide the others, unless it was asked for by name.
          if (provider)
            throw new ApiError(502, ErrorCode.providerFailed, `${name}: ${error instanceof Error ? error.message : String(error)}`)
        }
      }
      return c.json({ machines })
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/admin/leases',
      summary: 'List every lease',
      auth: 'admin',
      query: LeaseListQuery,
      response: LeaseListResponse,
    },
    (c, deps, input) => c.json(listLeases(deps.storage, c.get('identity'), input.query())),
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/admin/leases/:id/release',
      summary: "Release anyone's lease",
      auth: 'admin',
      params: { id: LeaseRef },
      body: ReleaseRequest,
      response: LeaseResponse,
    },
    async (c, deps, input) => {
      const ref = input.param('id')
      const body = await input.body({ optional: true })
      return c.json({ lease: await releaseLease(deps, c.get('identity'), ref, { delete: body.delete }) })
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/admin/leases/:id/delete',
      summary: 'Release a lease and delete its machine, even a kept one',
      auth: 'admin',
      params: { id: LeaseRef },
      response: LeaseResponse,
    },
    async (c, deps, input) =>
      c.json({ lease: await releaseLease(deps, c.get('identity'), input.param('id'), { delete: true, forgetKeep: true }) }),
  ),
]
