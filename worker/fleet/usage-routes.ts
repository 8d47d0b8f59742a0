import { UsageQuery, UsageResponse } from '../../src/protocol/usage.js'
import { costLimits } from './caps.js'
import { defineRoute, type RouteSpec } from './route-spec.js'
import { usageSelection, usageSummary } from './usage.js'

export const USAGE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/v1/usage',
      summary: "A month's usage and cost, with the configured limits",
      auth: 'user',
      query: UsageQuery,
      response: UsageResponse,
    },
    (c, deps, input) => {
      const now = deps.now()
      const selection = usageSelection(c.get('identity'), input.query(), now)
      return c.json({ usage: usageSummary(deps.storage, selection, now), limits: costLimits(deps.env) })
    },
  ),
]
