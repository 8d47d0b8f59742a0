import * as v from 'valibot'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { isLeaseId } from '../../src/protocol/ids.js'
import {
  CreateRunRequest,
  FinishRunRequest,
  ListRunsQuery,
  RunEventRequest,
  RunEventResponse,
  RunEventsQuery,
  RunEventsResponse,
  RunId,
  RunListResponse,
  RunResponse,
  RunTelemetryRequest,
} from '../../src/protocol/runs.js'
import { canSeeLease, type Identity } from '../auth/identity.js'
import { pushRunEvents } from './control.js'
import type { FleetDeps } from './deps.js'
import { getLeaseRecord } from './lease-store.js'
import { defineRoute, type RouteSpec } from './route-spec.js'
import {
  appendRunEvent,
  createRun,
  finishRun,
  getRun,
  getRunCore,
  listRuns,
  pageRunEvents,
  readRunLog,
  recordRunTelemetry,
  runRetentionDays,
  type RunLeaseInfo,
} from './runs.js'

/** Body caps: events carry ≤ 32 KiB of text (escaping can grow it); finish carries the log. */
const EVENT_BODY_BYTES = 256 * 1024
const FINISH_BODY_BYTES = 16 * 1024 * 1024

const DAY_MS = 86_400_000

/** The lease a new run names: none is fine (the CLI records before leasing); invisible is 404. */
function runLease(deps: FleetDeps, identity: Identity, leaseID: string): RunLeaseInfo | undefined {
  if (!leaseID) return undefined
  const lease = getLeaseRecord(deps.storage, leaseID)
  if (!lease) return undefined
  if (!canSeeLease(lease, identity)) throw new ApiError(404, ErrorCode.notFound, `lease ${leaseID} not found`)
  return lease
}

const params = { id: RunId }

/** Run history: records, events, logs and telemetry. */
export const RUN_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    { method: 'POST', path: '/v1/runs', summary: 'Start recording a run', auth: 'user', body: CreateRunRequest, response: RunResponse },
    async (c, deps, input) => {
      const body = await input.body()
      if (body.leaseID !== '' && !isLeaseId(body.leaseID))
        throw new ApiError(400, ErrorCode.invalidLeaseId, 'leaseID must be "" or a lease ID like cbx_0123456789ab')
      const { run } = createRun(deps.storage, c.get('identity'), body, runLease(deps, c.get('identity'), body.leaseID), deps.now())
      // The alarm prunes history; make sure it comes back once this run ages out.
      await deps.wakeBy(Date.parse(run.startedAt) + runRetentionDays(deps.env) * DAY_MS)
      return c.json({ run }, 201)
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/runs',
      summary: 'List visible runs, newest first',
      auth: 'user',
      query: ListRunsQuery,
      response: RunListResponse,
    },
    (c, deps, input) => c.json(listRuns(deps.storage, c.get('identity'), input.query())),
  ),
  defineRoute({ method: 'GET', path: '/v1/runs/:id', summary: 'One run', auth: 'user', params, response: RunResponse }, (c, deps, input) =>
    c.json({ run: getRun(deps.storage, c.get('identity'), input.param('id')) }),
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/runs/:id/events',
      summary: "A page of a run's events after a sequence number",
      auth: 'user',
      params,
      query: RunEventsQuery,
      response: RunEventsResponse,
    },
    (c, deps, input) => {
      const id = input.param('id')
      const query = input.query()
      getRunCore(deps.storage, c.get('identity'), id)
      // Bounded in bytes too: a page cut short says where to continue (`nextSeq`, the last seq in it).
      const { events, more } = pageRunEvents(deps.storage, id, query.after, query.limit)
      return c.json(more ? { events, nextSeq: events.at(-1)!.seq } : { events })
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/runs/:id/events',
      summary: 'Append an event to a run',
      auth: 'user',
      params,
      body: RunEventRequest,
      response: RunEventResponse,
    },
    async (c, deps, input) => {
      const id = input.param('id')
      const body = await input.body({ maxBytes: EVENT_BODY_BYTES })
      // An event may only name a lease the caller can see (missing is fine, as for a new run).
      if (body.leaseID) runLease(deps, c.get('identity'), body.leaseID)
      const { event } = appendRunEvent(deps.storage, c.get('identity'), id, body, deps.now())
      pushRunEvents(deps.ctx, deps.storage, id)
      return c.json({ event }, 201)
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/runs/:id/logs',
      summary: "A finished run's retained log (text/plain)",
      auth: 'user',
      params,
      response: v.string(),
    },
    (c, deps, input) => {
      const log = readRunLog(deps.storage, c.get('identity'), input.param('id'))
      return c.body(log, 200, { 'content-type': 'text/plain; charset=utf-8' })
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/runs/:id/telemetry',
      summary: 'Record one telemetry sample for a run',
      auth: 'user',
      params,
      body: RunTelemetryRequest,
      response: RunResponse,
    },
    async (c, deps, input) => {
      const id = input.param('id')
      const body = await input.body()
      return c.json({ run: recordRunTelemetry(deps.storage, c.get('identity'), id, body.telemetry, deps.now()) })
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/runs/:id/finish',
      summary: 'Finish a run with its exit code and log',
      auth: 'user',
      params,
      body: FinishRunRequest,
      response: RunResponse,
    },
    async (c, deps, input) => {
      const id = input.param('id')
      const body = await input.body({ maxBytes: FINISH_BODY_BYTES })
      const { run, refused } = finishRun(deps.storage, c.get('identity'), id, body, deps.now())
      pushRunEvents(deps.ctx, deps.storage, id)
      // The run finished with its log either way; only the results were refused.
      if (refused) throw refused
      return c.json({ run })
    },
  ),
]
