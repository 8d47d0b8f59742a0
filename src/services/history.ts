import type { Config } from '../config/schema.js'
import { CrabboxError, usageError } from '../errors.js'
import { LEASE_ID_PATTERN, RUN_ID_PATTERN } from '../protocol/ids.js'
import { LeaseResponse } from '../protocol/leases.js'
import {
  RunEventsResponse,
  RunListResponse,
  RunResponse,
  RUN_LIMITS,
  RUN_STATES,
  type RunEventRecord,
  type RunRecord,
  type TestResultSummary,
} from '../protocol/runs.js'
import { BrokerError, brokerClient, type BrokerClient } from '../transport/broker/client.js'

/** Run history lives on the broker: `history`, `events`, `logs`, `results` and `attach` read it. */
export interface HistoryContext {
  config: Config
}

export function requireRunBroker(context: HistoryContext): BrokerClient {
  const client = brokerClient(context.config)
  if (!client) {
    throw new CrabboxError('run history is kept by the broker, and no broker is configured', {
      exit: 'usage',
      hint: 'Set one with `crabbox config set-broker --url URL` (or CRABBOX_COORDINATOR); direct-mode runs are not recorded.',
    })
  }
  return client
}

function checkRunId(runId: string): string {
  if (!RUN_ID_PATTERN.test(runId))
    throw usageError(`${JSON.stringify(runId)} is not a run ID`, 'Run IDs look like run_0123456789ab; `crabbox history` lists them.')
  return runId
}

/** A broker call about one run, with "no such run" as exit 4 and a hint. */
async function aboutRun<T>(runId: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    if (error instanceof BrokerError && error.status === 404) {
      throw new CrabboxError(`no run ${runId}`, {
        exit: 'notFound',
        code: 'not_found',
        hint: '`crabbox history` lists the runs you can see.',
      })
    }
    throw error
  }
}

export function fetchRun(client: BrokerClient, runId: string): Promise<RunRecord> {
  checkRunId(runId)
  return aboutRun(runId, async () => (await client.request('GET', `/v1/runs/${runId}`, { schema: RunResponse, timeoutMs: 15_000 })).run)
}

export interface EventsQuery {
  after: number
  limit: number
}

/** `crabbox events`: one page of a run's events after `after`. */
export async function runEvents(context: HistoryContext, runId: string, query: EventsQuery): Promise<RunEventRecord[]> {
  const client = requireRunBroker(context)
  checkRunId(runId)
  const limit = Math.min(Math.max(1, query.limit), RUN_LIMITS.eventsPageMax)
  return aboutRun(runId, async () => {
    const { events } = await client.request('GET', `/v1/runs/${runId}/events`, {
      query: { after: Math.max(0, query.after), limit },
      schema: RunEventsResponse,
    })
    return events
  })
}

export interface RunLog {
  run: RunRecord
  log: string
}

/** `crabbox logs`: the retained log (last 8 MiB) of a run. */
export async function runLog(context: HistoryContext, runId: string, withRecord: boolean): Promise<RunLog | { log: string }> {
  const client = requireRunBroker(context)
  checkRunId(runId)
  const log = aboutRun(runId, () => client.requestText('GET', `/v1/runs/${runId}/logs`))
  if (!withRecord) return { log: await log }
  const [run, text] = await Promise.all([fetchRun(client, runId), log])
  return { run, log: text }
}

export interface HistoryQuery {
  lease?: string
  owner?: string
  org?: string
  state?: string
  limit: number
}

/** `crabbox history`: recent runs, newest first; `--lease` takes an ID or an active lease's slug. */
export async function runHistory(context: HistoryContext, query: HistoryQuery): Promise<RunRecord[]> {
  const client = requireRunBroker(context)
  if (query.state !== undefined && !(RUN_STATES as readonly string[]).includes(query.state)) {
    throw usageError(`unknown run state ${JSON.stringify(query.state)}`, `Use one of: ${RUN_STATES.join(', ')}.`)
  }
  let leaseID = query.lease
  if (leaseID && !LEASE_ID_PATTERN.test(leaseID)) {
    try {
      leaseID = (await client.request('GET', `/v1/leases/${encodeURIComponent(leaseID)}`, { schema: LeaseResponse })).lease.id
    } catch (error) {
      if (error instanceof BrokerError && error.status === 404) {
        throw new CrabboxError(`no lease ${query.lease}`, {
          exit: 'notFound',
          hint: 'Pass the lease ID (cbx_…); slugs only name active leases.',
        })
      }
      throw error
    }
  }
  const { runs } = await client.request('GET', '/v1/runs', {
    query: {
      leaseID,
      owner: query.owner,
      org: query.org,
      state: query.state,
      limit: Math.min(Math.max(1, query.limit), RUN_LIMITS.listMax),
    },
    schema: RunListResponse,
  })
  return runs
}

/** `crabbox results`: the JUnit summary the run recorded, or null. */
export async function runResults(context: HistoryContext, runId: string): Promise<TestResultSummary | null> {
  const run = await fetchRun(requireRunBroker(context), runId)
  return run.results ?? null
}
