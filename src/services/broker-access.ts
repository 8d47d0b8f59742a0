import { CrabboxError, usageError } from '../errors.js'
import { brokerClient, type BrokerClient } from '../transport/broker/client.js'
import type { ServiceContext } from './context.js'

const noBrokerHint = 'Run `crabbox login --url https://your-broker` or `crabbox config set-broker --url URL`.'

/** The broker client, or exit 2 saying that `what` needs a broker. */
export function requireBroker(context: ServiceContext, what: string): BrokerClient {
  const client = brokerClient(context.config)
  if (!client) throw usageError(`${what} needs a broker, and none is configured`, noBrokerHint)
  return client
}

/** The broker client for an admin route, or exit 3 naming the missing setting. */
export function requireAdminBroker(context: ServiceContext, what: string): BrokerClient {
  const client = requireBroker(context, what)
  if (!context.config.broker.adminToken)
    throw new CrabboxError(`${what} needs the broker admin token: broker.adminToken (or CRABBOX_ADMIN_TOKEN) is not set`, {
      exit: 'auth',
      code: 'admin_token_missing',
      hint: 'Set it with `crabbox config set-broker --url URL --admin-token-stdin` or the CRABBOX_ADMIN_TOKEN environment variable.',
    })
  return client
}
