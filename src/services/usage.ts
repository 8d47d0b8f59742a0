import { UsageResponse, type UsageScope } from '../protocol/usage.js'
import { requireBroker } from './broker-access.js'
import type { ServiceContext } from './context.js'

export interface UsageOptions {
  scope?: UsageScope
  user?: string
  org?: string
  /** `YYYY-MM`; the broker's current UTC month when absent. */
  month?: string
}

/**
 * `usage`: a month's leases, runtime and spend, with the caps in force. Sent
 * with the admin token when one is configured (only an admin may look past
 * their own user); the broker narrows anyone else to themselves, and this says so.
 */
export async function fetchUsage(context: ServiceContext, options: UsageOptions): Promise<UsageResponse> {
  const client = requireBroker(context, 'usage')
  const admin = Boolean(context.config.broker.adminToken)
  const scope = options.scope ?? (options.org ? 'org' : 'user')
  const result = await client.request('GET', '/v1/usage', {
    admin,
    query: { scope, owner: options.user, org: options.org, month: options.month },
    schema: UsageResponse,
  })
  const narrowed = result.usage.scope !== scope || (options.user !== undefined && result.usage.owner !== options.user.trim())
  if (narrowed)
    context.progress.warn(
      `the broker showed your own usage only (scope=${result.usage.scope}); other users, orgs and --scope all need the admin token (broker.adminToken or CRABBOX_ADMIN_TOKEN)`,
    )
  return result
}
