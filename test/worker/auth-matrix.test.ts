import { describe, expect, it } from 'vitest'
import { adminCaller, api, createLease, nobody, shared, type Who } from './broker-support.js'

/**
 * Every lease and admin route against every kind of caller. A fresh lease per
 * cell, owned by `owner` and shared with `sharee` for use.
 */
const owner = shared('matrix-owner@example.com', 'matrix')
const callers: Record<string, Who> = {
  'no token': nobody,
  'other owner': shared('matrix-other@example.com', 'elsewhere'),
  'same owner': owner,
  'shared-with user': shared('matrix-sharee@example.com', 'elsewhere'),
  admin: adminCaller,
}

type Route = { name: string; method: string; path: (id: string) => string; body?: unknown; expect: Record<string, number>; visible?: boolean }

const member = { 'no token': 401, 'other owner': 404, 'same owner': 200, 'shared-with user': 200, admin: 200 }
const manager = { 'no token': 401, 'other owner': 404, 'same owner': 200, 'shared-with user': 403, admin: 200 }
const adminOnly = { 'no token': 401, 'other owner': 403, 'same owner': 403, 'shared-with user': 403, admin: 200 }

const routes: Route[] = [
  { name: 'whoami', method: 'GET', path: () => '/v1/whoami', expect: { 'no token': 401, 'other owner': 200, 'same owner': 200, 'shared-with user': 200, admin: 200 } },
  {
    name: 'create',
    method: 'POST',
    path: () => '/v1/leases',
    body: { provider: 'static', sshPublicKey: 'ssh-ed25519 AAAA matrix' },
    expect: { 'no token': 401, 'other owner': 201, 'same owner': 201, 'shared-with user': 201, admin: 201 },
  },
  { name: 'list', method: 'GET', path: () => '/v1/leases?limit=500', expect: { 'no token': 401, 'other owner': 200, 'same owner': 200, 'shared-with user': 200, admin: 200 }, visible: true },
  { name: 'get', method: 'GET', path: (id) => `/v1/leases/${id}`, expect: member },
  { name: 'heartbeat', method: 'POST', path: (id) => `/v1/leases/${id}/heartbeat`, body: {}, expect: member },
  { name: 'share get', method: 'GET', path: (id) => `/v1/leases/${id}/share`, expect: member },
  { name: 'share put', method: 'PUT', path: (id) => `/v1/leases/${id}/share`, body: { users: { 'matrix-sharee@example.com': 'use' } }, expect: manager },
  { name: 'share delete', method: 'DELETE', path: (id) => `/v1/leases/${id}/share`, body: { user: 'someone@example.com' }, expect: manager },
  { name: 'release', method: 'POST', path: (id) => `/v1/leases/${id}/release`, body: { delete: true }, expect: manager },
  { name: 'pool', method: 'GET', path: () => '/v1/pool', expect: adminOnly },
  { name: 'admin list', method: 'GET', path: () => '/v1/admin/leases', expect: adminOnly },
  { name: 'admin release', method: 'POST', path: (id) => `/v1/admin/leases/${id}/release`, body: {}, expect: adminOnly },
  { name: 'admin delete', method: 'POST', path: (id) => `/v1/admin/leases/${id}/delete`, expect: adminOnly },
]

describe('auth matrix over every lease route', () => {
  for (const route of routes) {
    it(`${route.method} ${route.name}`, async () => {
      for (const [callerName, caller] of Object.entries(callers)) {
        const lease = await createLease(owner)
        await api(owner, 'PUT', `/v1/leases/${lease.id}/share`, { users: { 'matrix-sharee@example.com': 'use' } })
        const result = await api(caller, route.method, route.path(lease.id), route.body)
        expect({ caller: callerName, status: result.status }).toEqual({ caller: callerName, status: route.expect[callerName] })
        if (result.status === 401) expect(result.body).toMatchObject({ error: 'unauthorized' })
        if (result.status === 403) expect(result.body.error).toBe('forbidden')
        if (result.status === 404) expect(result.body).toMatchObject({ error: 'not_found' })
        if (route.visible && result.status === 200) {
          const ids = result.body.leases.map((l: { id: string }) => l.id)
          expect({ caller: callerName, sees: ids.includes(lease.id) }).toEqual({ caller: callerName, sees: callerName !== 'other owner' })
        }
        // Not visible looks exactly like missing.
        if (result.status === 404) {
          const missing = await api(caller, route.method, route.path('cbx_000000000000'), route.body)
          expect(missing.status).toBe(404)
          expect(missing.body.error).toBe(result.body.error)
        }
        if (result.status === 201) await api(adminCaller, 'POST', `/v1/admin/leases/${result.body.lease.id}/delete`)
        await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
      }
    })
  }
})
