import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { isLeaseId } from '../../src/protocol/ids.js'
import {
  CreateRunRequest,
  FinishRunRequest,
  ListRunsQuery,
  RunEventRequest,
  RunEventsQuery,
  RunId,
  RunTelemetryRequest,
} from '../../src/protocol/runs.js'
import { canSeeLease, type Identity } from '../auth/identity.js'
import { pushRunEvents } from './control.js'
import { getLeaseRecord } from './leases.js'
import { jsonBody, pathParam, queryParams, type FleetApp, type FleetContext, type FleetDeps } from './router.js'
import {
  appendRunEvent,
  createRun,
  finishRun,
  getRun,
  listRunEvents,
  listRuns,
  pruneRuns,
  readRunLog,
  recordRunTelemetry,
  runRetentionDays,
  type RunLeaseInfo,
} from './runs.js'

/** Body caps: events carry ≤ 32 KiB of text (escaping can grow it); finish carries the log. */
const EVENT_BODY_BYTES = 256 * 1024
const FINISH_BODY_BYTES = 16 * 1024 * 1024

const DAY_MS = 86_400_000
const SOON_MS = 1_000

/** The lease a new run names: none is fine (the CLI records before leasing); invisible is 404. */
function runLease(deps: FleetDeps, identity: Identity, leaseID: string): RunLeaseInfo | undefined {
  if (!leaseID) return undefined
  const lease = getLeaseRecord(deps.storage, leaseID)
  if (!lease) return undefined
  if (!canSeeLease(lease, identity)) throw new ApiError(404, ErrorCode.notFound, `lease ${leaseID} not found`)
  return lease
}

/** HTTP routes for run history (coordinator API §4.13–4.19) plus the retention hook. */
export function registerRunRoutes(app: FleetApp, deps: FleetDeps): void {
  const { storage } = deps
  const runId = (c: FleetContext) => pathParam(c, 'id', RunId)
  const push = (id: string) => pushRunEvents(deps.ctx, storage, id)

  deps.hooks.prune = (db, now, budget) => {
    const days = runRetentionDays(deps.env)
    const result = pruneRuns(db, { before: new Date(now.getTime() - days * DAY_MS), maxRows: budget })
    if (result.more) return { nextAt: now.getTime() + SOON_MS }
    return result.oldestKept ? { nextAt: Date.parse(result.oldestKept) + days * DAY_MS } : {}
  }

  app.post('/v1/runs', async (c) => {
    const body = await jsonBody(c, CreateRunRequest)
    if (body.leaseID !== '' && !isLeaseId(body.leaseID)) throw new ApiError(400, ErrorCode.invalidLeaseId, 'leaseID must be "" or a lease ID like cbx_0123456789ab')
    const { run } = createRun(storage, c.get('identity'), body, runLease(deps, c.get('identity'), body.leaseID), deps.now())
    // The alarm prunes history; make sure it comes back once this run ages out.
    await deps.wakeBy(Date.parse(run.startedAt) + runRetentionDays(deps.env) * DAY_MS)
    return c.json({ run }, 201)
  })

  app.get('/v1/runs', (c) => c.json(listRuns(storage, c.get('identity'), queryParams(c, ListRunsQuery))))

  app.get('/v1/runs/:id', (c) => c.json({ run: getRun(storage, c.get('identity'), runId(c)) }))

  app.get('/v1/runs/:id/events', (c) => {
    const id = runId(c)
    const query = queryParams(c, RunEventsQuery)
    getRun(storage, c.get('identity'), id)
    return c.json({ events: listRunEvents(storage, id, query.after, query.limit) })
  })

  app.post('/v1/runs/:id/events', async (c) => {
    const id = runId(c)
    const body = await jsonBody(c, RunEventRequest, { maxBytes: EVENT_BODY_BYTES })
    const { event } = appendRunEvent(storage, c.get('identity'), id, body, deps.now())
    push(id)
    return c.json({ event }, 201)
  })

  app.get('/v1/runs/:id/logs', (c) => {
    const log = readRunLog(storage, c.get('identity'), runId(c))
    return c.body(log, 200, { 'content-type': 'text/plain; charset=utf-8' })
  })

  app.post('/v1/runs/:id/telemetry', async (c) => {
    const id = runId(c)
    const body = await jsonBody(c, RunTelemetryRequest)
    return c.json({ run: recordRunTelemetry(storage, c.get('identity'), id, body.telemetry, deps.now()) })
  })

  app.post('/v1/runs/:id/finish', async (c) => {
    const id = runId(c)
    const body = await jsonBody(c, FinishRunRequest, { maxBytes: FINISH_BODY_BYTES })
    const { run } = finishRun(storage, c.get('identity'), id, body, deps.now())
    push(id)
    return c.json({ run })
  })
}
