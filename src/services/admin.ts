import { LeaseListResponse, LeaseResponse, type LeaseRecord, type LeaseState } from '../protocol/leases.js'
import { requireAdminBroker } from './broker-access.js'
import type { ServiceContext } from './context.js'

export interface AdminLeaseQuery {
  state?: LeaseState
  owner?: string
  org?: string
  limit?: number
}

const adminLeasePath = (id: string, action: 'release' | 'delete') => `/v1/admin/leases/${encodeURIComponent(id)}/${action}`

/** `admin leases`: every owner's leases, newest first, filtered by the broker. */
export async function adminListLeases(context: ServiceContext, query: AdminLeaseQuery): Promise<LeaseRecord[]> {
  const client = requireAdminBroker(context, 'admin leases')
  const page = await client.request('GET', '/v1/admin/leases', {
    admin: true,
    query: { state: query.state, owner: query.owner, org: query.org, limit: query.limit },
    schema: LeaseListResponse,
  })
  return page.leases
}

/** `admin release`: releases anyone's lease; `delete` also deletes its machine. */
export async function adminReleaseLease(context: ServiceContext, id: string, options: { delete: boolean }): Promise<LeaseRecord> {
  const client = requireAdminBroker(context, 'admin release')
  const reply = await client.request('POST', adminLeasePath(id, 'release'), {
    admin: true,
    body: { delete: options.delete },
    schema: LeaseResponse,
  })
  return reply.lease
}

/** `admin delete`: releases the lease and deletes its machine, even a kept one. */
export async function adminDeleteLease(context: ServiceContext, id: string): Promise<LeaseRecord> {
  const client = requireAdminBroker(context, 'admin delete')
  const reply = await client.request('POST', adminLeasePath(id, 'delete'), { admin: true, body: {}, schema: LeaseResponse })
  return reply.lease
}
