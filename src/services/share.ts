import { usageError } from '../errors.js'
import { ShareResponse, type LeaseShare, type ShareRole } from '../protocol/leases.js'
import { BrokerError, type BrokerClient } from '../transport/broker/client.js'
import { requireBroker } from './broker-access.js'
import type { ServiceContext } from './context.js'

export interface ShareResult {
  leaseID: string
  share: LeaseShare
}

export interface ShareChange {
  /** Users to add (or whose role to change), as given; compared lowercased like the broker does. */
  users: string[]
  /** Share with the lease's org too. */
  org: boolean
  role: ShareRole
}

export interface UnshareChange {
  users: string[]
  org: boolean
  /** Drop every user and the org share. */
  all: boolean
}

const sharePath = (id: string) => `/v1/leases/${encodeURIComponent(id)}/share`
const normalizeUser = (user: string) => user.trim().toLowerCase()

/**
 * Share calls on a lease you may see but not manage come back 403; for this
 * command that is "not a lease you manage" (exit 4), with the broker's words.
 */
async function shareCall<T>(id: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    if (error instanceof BrokerError && error.status === 403)
      throw new BrokerError(error.message, {
        status: 403,
        errorCode: error.errorCode,
        exit: 'notFound',
        hint: `Only the owner of ${id}, someone it is shared with as manage, or an admin can change its sharing.`,
      })
    throw error
  }
}

function validUsers(users: string[]): string[] {
  const out = users.map(normalizeUser)
  const empty = users.find((_, i) => out[i] === '')
  if (empty !== undefined) throw usageError('--user must name a user (an email), got an empty value')
  return out
}

const getShare = (client: BrokerClient, id: string) => shareCall(id, () => client.request('GET', sharePath(id), { schema: ShareResponse }))

const putShare = (client: BrokerClient, id: string, share: LeaseShare) =>
  shareCall(id, () =>
    client.request('PUT', sharePath(id), {
      body: { users: share.users ?? {}, ...(share.org ? { org: share.org } : {}) },
      schema: ShareResponse,
    }),
  )

/** `share`: with no users and no org, the current sharing; else merges the change into it. */
export async function shareLease(context: ServiceContext, id: string, change?: ShareChange): Promise<ShareResult> {
  const client = requireBroker(context, 'sharing a lease')
  const current = await getShare(client, id)
  if (!change || (change.users.length === 0 && !change.org)) return current
  const users = { ...(current.share.users ?? {}) }
  for (const user of validUsers(change.users)) users[user] = change.role
  return putShare(client, current.leaseID, { users, org: change.org ? change.role : current.share.org })
}

/** `unshare`: removes the named users and/or the org share, or everything with `all`. */
export async function unshareLease(context: ServiceContext, id: string, change: UnshareChange): Promise<ShareResult> {
  if (!change.all && change.users.length === 0 && !change.org)
    throw usageError('nothing to unshare: pass --user EMAIL, --org or --all', 'See `crabbox share --list ID` for the current sharing.')
  const client = requireBroker(context, 'unsharing a lease')
  if (change.all) return shareCall(id, () => client.request('DELETE', sharePath(id), { body: {}, schema: ShareResponse }))
  const current = await getShare(client, id)
  const users = { ...(current.share.users ?? {}) }
  for (const user of validUsers(change.users)) delete users[user]
  return putShare(client, current.leaseID, { users, org: change.org ? undefined : current.share.org })
}
