import { RunnersQuery, RunnersResponse, RunnersSyncRequest, RunnersSyncResponse } from '../../src/protocol/runners.js'
import { defineRoute, type RouteSpec } from './route-spec.js'
import { listRunners, runnerFilter, syncRunners } from './runners.js'

/** A sync of 200 runners with every field filled is well under this. */
const MAX_SYNC_BYTES = 512 * 1024

export const RUNNER_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/v1/runners',
      summary: 'External runners the caller may see (own rows; admins: all), most recently reported first',
      auth: 'user',
      query: RunnersQuery,
      response: RunnersResponse,
    },
    (c, deps, input) => c.json({ runners: listRunners(deps.storage, c.get('identity'), runnerFilter(input.query())) }),
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/runners/sync',
      summary: "Report a delegated provider's current runners; the caller's rows it no longer lists become stale (status missing)",
      auth: 'user',
      body: RunnersSyncRequest,
      response: RunnersSyncResponse,
    },
    async (c, deps, input) => {
      const body = await input.body({ maxBytes: MAX_SYNC_BYTES })
      return c.json(syncRunners(deps.storage, c.get('identity'), body.provider, body.runners ?? [], deps.now()))
    },
  ),
]
