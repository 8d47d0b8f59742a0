import {
  HeartbeatRequest,
  LeaseListQuery,
  LeaseListResponse,
  LeaseRef,
  LeaseRequest,
  LeaseResponse,
  ReleaseRequest,
  ShareDeleteRequest,
  SharePutRequest,
  ShareResponse,
} from '../../src/protocol/leases.js'
import { TailscaleUpdateRequest } from '../../src/protocol/tailscale.js'
import { createLease } from './lease-create.js'
import { listLeases, resolveLease } from './lease-store.js'
import { deleteShare, getShare, heartbeatLease, putShare, releaseLease } from './leases.js'
import { defineRoute, type RouteSpec } from './route-spec.js'
import { updateTailscale } from './tailscale.js'

/** `/v1/leases…`: handlers parse, call the lease modules, render. */
export const LEASE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'POST',
      path: '/v1/leases',
      summary: 'Create a lease (idempotent on leaseID)',
      auth: 'user',
      body: LeaseRequest,
      response: LeaseResponse,
    },
    async (c, deps, input) => {
      const { lease, created } = await createLease(deps, c.get('identity'), await input.body())
      return c.json({ lease }, created ? 201 : 200)
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/leases',
      summary: 'List visible leases, newest first',
      auth: 'user',
      query: LeaseListQuery,
      response: LeaseListResponse,
    },
    (c, deps, input) => c.json(listLeases(deps.storage, c.get('identity'), input.query())),
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/leases/:id',
      summary: 'One lease by ID or slug',
      auth: 'user',
      params: { id: LeaseRef },
      response: LeaseResponse,
    },
    (c, deps, input) => c.json({ lease: resolveLease(deps.storage, c.get('identity'), input.param('id'), deps.now()) }),
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/leases/:id/heartbeat',
      summary: 'Keep a live lease alive',
      auth: 'user',
      params: { id: LeaseRef },
      body: HeartbeatRequest,
      response: LeaseResponse,
    },
    async (c, deps, input) => {
      const ref = input.param('id')
      const body = await input.body({ optional: true })
      return c.json({ lease: await heartbeatLease(deps, c.get('identity'), ref, body) })
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/leases/:id/tailscale',
      summary: "Record the runner's Tailscale state (address, exit node, ready or failed)",
      auth: 'user',
      params: { id: LeaseRef },
      body: TailscaleUpdateRequest,
      response: LeaseResponse,
    },
    async (c, deps, input) => {
      const ref = input.param('id')
      return c.json({ lease: updateTailscale(deps, c.get('identity'), ref, await input.body()) })
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/leases/:id/release',
      summary: 'Release a lease and (unless kept) delete its machine',
      auth: 'user',
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
      method: 'GET',
      path: '/v1/leases/:id/share',
      summary: "A lease's sharing",
      auth: 'user',
      params: { id: LeaseRef },
      response: ShareResponse,
    },
    (c, deps, input) => c.json(getShare(deps, c.get('identity'), input.param('id'))),
  ),
  defineRoute(
    {
      method: 'PUT',
      path: '/v1/leases/:id/share',
      summary: "Replace a lease's sharing",
      auth: 'user',
      params: { id: LeaseRef },
      body: SharePutRequest,
      response: ShareResponse,
    },
    async (c, deps, input) => {
      const ref = input.param('id')
      return c.json(putShare(deps, c.get('identity'), ref, await input.body()))
    },
  ),
  defineRoute(
    {
      method: 'DELETE',
      path: '/v1/leases/:id/share',
      summary: 'Remove one user, the org, or all sharing',
      auth: 'user',
      params: { id: LeaseRef },
      body: ShareDeleteRequest,
      response: ShareResponse,
    },
    async (c, deps, input) => {
      const ref = input.param('id')
      return c.json(deleteShare(deps, c.get('identity'), ref, await input.body({ optional: true })))
    },
  ),
]
