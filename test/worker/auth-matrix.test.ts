import { describe, expect, it } from 'vitest'
import { adminCaller, api, createLease, nobody, shared, type Who } from './broker-support.js'

/**
 * Every route against every kind of caller. A fresh lease per cell, owned by
 * `owner` and shared with `sharee` for use, and a run of `owner` on that lease
 * (runs are never shared, whatever the lease's sharing says).
 */
const owner = shared('matrix-owner@example.com', 'matrix')
const callers: Record<string, Who> = {
  'no token': nobody,
  'other owner': shared('matrix-other@example.com', 'elsewhere'),
  'same owner': owner,
  'shared-with user': shared('matrix-sharee@example.com', 'elsewhere'),
  admin: adminCaller,
}

type Route = {
  name: string
  method: string
  path: (lease: string, run: string) => string
  body?: unknown
  expect: Record<string, number>
  /** A list route: which callers find the cell's record in it. */
  lists?: { key: 'leases' | 'runs'; record: 'lease' | 'run'; seenBy: string[] }
}

const member = { 'no token': 401, 'other owner': 404, 'same owner': 200, 'shared-with user': 200, admin: 200 }
const manager = { 'no token': 401, 'other owner': 404, 'same owner': 200, 'shared-with user': 403, admin: 200 }
const adminOnly = { 'no token': 401, 'other owner': 403, 'same owner': 403, 'shared-with user': 403, admin: 200 }
const anyone = (status: number) => ({
  'no token': 401,
  'other owner': status,
  'same owner': status,
  'shared-with user': status,
  admin: status,
})
const runOwner = (status: number) => ({ 'no token': 401, 'other owner': 404, 'same owner': status, 'shared-with user': 404, admin: status })

const routes: Route[] = [
  { name: 'whoami', method: 'GET', path: () => '/v1/whoami', expect: anyone(200) },
  {
    name: 'create',
    method: 'POST',
    path: () => '/v1/leases',
    body: { provider: 'static', sshPublicKey: 'ssh-ed25519 AAAA matrix' },
    expect: anyone(201),
  },
  {
    name: 'list',
    method: 'GET',
    path: () => '/v1/leases?limit=500',
    expect: anyone(200),
    lists: { key: 'leases', record: 'lease', seenBy: ['same owner', 'shared-with user', 'admin'] },
  },
  { name: 'get', method: 'GET', path: (id) => `/v1/leases/${id}`, expect: member },
  { name: 'heartbeat', method: 'POST', path: (id) => `/v1/leases/${id}/heartbeat`, body: {}, expect: member },
  { name: 'share get', method: 'GET', path: (id) => `/v1/leases/${id}/share`, expect: member },
  {
    name: 'share put',
    method: 'PUT',
    path: (id) => `/v1/leases/${id}/share`,
    body: { users: { 'matrix-sharee@example.com': 'use' } },
    expect: manager,
  },
  {
    name: 'share delete',
    method: 'DELETE',
    path: (id) => `/v1/leases/${id}/share`,
    body: { user: 'someone@example.com' },
    expect: manager,
  },
  { name: 'release', method: 'POST', path: (id) => `/v1/leases/${id}/release`, body: { delete: true }, expect: manager },
  { name: 'pool', method: 'GET', path: () => '/v1/pool', expect: adminOnly },
  { name: 'admin list', method: 'GET', path: () => '/v1/admin/leases', expect: adminOnly },
  { name: 'admin release', method: 'POST', path: (id) => `/v1/admin/leases/${id}/release`, body: {}, expect: adminOnly },
  { name: 'admin delete', method: 'POST', path: (id) => `/v1/admin/leases/${id}/delete`, expect: adminOnly },
  // A run may name any lease its caller can see: the sharee may, a stranger may not.
  {
    name: 'run create',
    method: 'POST',
    path: () => '/v1/runs',
    body: { command: ['make'] },
    expect: { ...member, 'same owner': 201, 'shared-with user': 201, admin: 201 },
  },
  {
    name: 'run list',
    method: 'GET',
    path: () => '/v1/runs?limit=500',
    expect: anyone(200),
    lists: { key: 'runs', record: 'run', seenBy: ['same owner', 'admin'] },
  },
  { name: 'run get', method: 'GET', path: (_id, run) => `/v1/runs/${run}`, expect: runOwner(200) },
  { name: 'run events', method: 'GET', path: (_id, run) => `/v1/runs/${run}/events`, expect: runOwner(200) },
  {
    name: 'run event append',
    method: 'POST',
    path: (_id, run) => `/v1/runs/${run}/events`,
    body: { type: 'stdout', stream: 'stdout', data: 'x\n' },
    expect: runOwner(201),
  },
  { name: 'run logs', method: 'GET', path: (_id, run) => `/v1/runs/${run}/logs`, expect: runOwner(200) },
  {
    name: 'run telemetry',
    method: 'POST',
    path: (_id, run) => `/v1/runs/${run}/telemetry`,
    body: { telemetry: { load1: 0.5 } },
    expect: runOwner(200),
  },
  {
    name: 'run finish',
    method: 'POST',
    path: (_id, run) => `/v1/runs/${run}/finish`,
    body: { exitCode: 0, log: 'ok\n' },
    expect: runOwner(200),
  },
  { name: 'usage', method: 'GET', path: () => '/v1/usage', expect: anyone(200) },
]

describe('auth matrix over every route', () => {
  for (const route of routes) {
    it(`${route.method} ${route.name}`, async () => {
      for (const [callerName, caller] of Object.entries(callers)) {
        const lease = await createLease(owner)
        await api(owner, 'PUT', `/v1/leases/${lease.id}/share`, { users: { 'matrix-sharee@example.com': 'use' } })
        const run = (await api(owner, 'POST', '/v1/runs', { leaseID: lease.id, command: ['npm', 'test'] })).body.run
        const body = route.name === 'run create' ? { ...(route.body as object), leaseID: lease.id } : route.body
        const result = await api(caller, route.method, route.path(lease.id, run.id), body)
        expect({ caller: callerName, status: result.status }).toEqual({ caller: callerName, status: route.expect[callerName] })
        if (result.status === 401) expect(result.body).toMatchObject({ error: 'unauthorized' })
        if (result.status === 403) expect(result.body.error).toBe('forbidden')
        if (result.status === 404) expect(result.body).toMatchObject({ error: 'not_found' })
        if (route.lists && result.status === 200) {
          const ids = result.body[route.lists.key].map((r: { id: string }) => r.id)
          const id = route.lists.record === 'lease' ? lease.id : run.id
          expect({ caller: callerName, sees: ids.includes(id) }).toEqual({
            caller: callerName,
            sees: route.lists.seenBy.includes(callerName),
          })
        }
        // Not visible looks exactly like missing.
        if (result.status === 404) {
          const missingBody = route.name === 'run create' ? { ...(route.body as object), leaseID: 'cbx_000000000000' } : route.body
          const missing = await api(caller, route.method, route.path('cbx_000000000000', 'run_000000000000'), missingBody)
          // A run may name a lease nobody holds (the CLI records before leasing); any other miss is a 404.
          expect(missing.status).toBe(route.name === 'run create' ? 201 : 404)
          if (route.name !== 'run create') expect(missing.body.error).toBe(result.body.error)
        }
        if (result.status === 201 && result.body.lease) await api(adminCaller, 'POST', `/v1/admin/leases/${result.body.lease.id}/delete`)
        await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
        // The owner may keep only 100 running runs (docs/security.md): finish the cell's run.
        await api(owner, 'POST', `/v1/runs/${run.id}/finish`, { exitCode: 0 })
      }
    })
  }
})
