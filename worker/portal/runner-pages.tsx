import * as v from 'valibot'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import type { ExternalRunnerRecord } from '../../src/protocol/runners.js'
import type { FleetDeps } from '../fleet/deps.js'
import { defineRoute, type RouteSpec } from '../fleet/route-spec.js'
import { findRunner, listRunners } from '../fleet/runners.js'
import { CopyCommand, Facts, TableWrap } from './layout.js'
import { relativeTime, shellQuote, type Tone } from './format.js'
import { guarded, page, type PortalCaller } from './page.js'

/**
 * External runners in the portal: a section under the lease grid (the caller's own runners;
 * an admin's: everyone's) and `/portal/runners/{provider}/{id}`, a runner's detail page.
 */

/** How many runners the grid's section shows (most recently reported first). */
export const RUNNER_SECTION_SIZE = 50

const STUCK_QUEUED_MS = 20 * 60 * 1000
const STUCK_RUNNING_MS = 90 * 60 * 1000

function runnerTone(runner: ExternalRunnerRecord): Tone {
  if (runner.stale) return 'bad'
  if (runner.status === 'ready' || runner.status === 'running' || runner.status === 'active') return 'ok'
  return 'warn'
}

/**
 * The GitHub Actions badge: `stuck <age>` when the run has been queued over 20 minutes or
 * running over 90 without a conclusion, else `gha <status or conclusion>`.
 */
export function actionsBadge(runner: ExternalRunnerRecord, now: Date): { text: string; tone: Tone } | undefined {
  const status = runner.actionsRunConclusion ?? runner.actionsRunStatus
  if (!status) return undefined
  const since = runner.createdAt ?? runner.firstSeenAt
  const age = now.getTime() - Date.parse(since)
  const limit = runner.actionsRunStatus === 'queued' ? STUCK_QUEUED_MS : runner.actionsRunStatus === 'in_progress' ? STUCK_RUNNING_MS : 0
  if (!runner.actionsRunConclusion && limit && age > limit)
    return { text: `stuck ${relativeTime(since, now).replace(/ ago$/, '')}`, tone: 'bad' }
  const tone: Tone = runner.actionsRunConclusion === 'success' ? 'ok' : runner.actionsRunConclusion ? 'bad' : 'info'
  return { text: `gha ${status}`, tone }
}

export const runnerStopCommand = (runner: Pick<ExternalRunnerRecord, 'provider' | 'id'>) =>
  `crabbox stop --provider ${shellQuote(runner.provider)} ${shellQuote(runner.id)}`

function runnerHref(runner: ExternalRunnerRecord, caller: PortalCaller): string {
  const path = `/portal/runners/${encodeURIComponent(runner.provider)}/${encodeURIComponent(runner.id)}`
  if (!caller.identity.admin) return path
  return `${path}?${new URLSearchParams({ owner: runner.owner, org: runner.org }).toString()}`
}

function Links({ runner }: { runner: ExternalRunnerRecord }) {
  return (
    <>
      {runner.actionsRunURL ? <a href={runner.actionsRunURL}>run</a> : null}
      {runner.actionsRunURL && runner.actionsWorkflowURL ? ' · ' : null}
      {runner.actionsWorkflowURL ? <a href={runner.actionsWorkflowURL}>{runner.actionsWorkflowName ?? 'workflow'}</a> : null}
    </>
  )
}

function RunnerRow({ runner, caller, now }: { runner: ExternalRunnerRecord; caller: PortalCaller; now: Date }) {
  const badge = actionsBadge(runner, now)
  const mine = runner.owner === caller.identity.owner && runner.org === caller.identity.org
  return (
    <tr>
      <td>
        <a href={runnerHref(runner, caller)} class="mono">
          {runner.id}
        </a>
        {runner.repo ? <div class="muted">{runner.repo}</div> : null}
      </td>
      <td>
        <span class={`pill ${runnerTone(runner)}`}>{runner.status}</span>
        {badge ? (
          <>
            {' '}
            <span class={`pill ${badge.tone}`}>{badge.text}</span>
          </>
        ) : null}
      </td>
      <td>
        <span class="badge">{runner.provider}</span>
      </td>
      <td class="wide">{mine ? 'me' : `${runner.owner} (${runner.org})`}</td>
      <td>
        <time datetime={runner.lastSeenAt}>{relativeTime(runner.lastSeenAt, now)}</time>
      </td>
      <td class="wide">
        <Links runner={runner} />
      </td>
      <td class="wide">
        {runner.stale ? <span class="muted">missing</span> : <CopyCommand command={runnerStopCommand(runner)} label="stop command" />}
      </td>
    </tr>
  )
}

/** The grid's external-runner section; nothing when the caller has no runners to see. */
export function RunnerSection({ deps, caller }: { deps: FleetDeps; caller: PortalCaller }) {
  const runners = listRunners(deps.storage, caller.identity, { limit: RUNNER_SECTION_SIZE })
  if (!runners.length) return null
  const now = deps.now()
  return (
    <>
      <h2>External runners</h2>
      <TableWrap card label="External runners">
        <table>
          <caption class="muted">Runners a delegated provider reported through crabbox list</caption>
          <thead>
            <tr>
              <th scope="col">Runner</th>
              <th scope="col">Status</th>
              <th scope="col">Provider</th>
              <th scope="col" class="wide">
                Owner
              </th>
              <th scope="col">Seen</th>
              <th scope="col" class="wide">
                Actions
              </th>
              <th scope="col" class="wide">
                Commands
              </th>
            </tr>
          </thead>
          <tbody>
            {runners.map((runner) => (
              <RunnerRow runner={runner} caller={caller} now={now} />
            ))}
          </tbody>
        </table>
      </TableWrap>
    </>
  )
}

function RunnerPage({ runner, now }: { runner: ExternalRunnerRecord; now: Date }) {
  const badge = actionsBadge(runner, now)
  return (
    <>
      <h1 class="mono">{runner.id}</h1>
      <section class="card">
        <h2>Runner</h2>
        <Facts
          rows={[
            ['Status', <span class={`pill ${runnerTone(runner)}`}>{runner.status}</span>],
            ['Provider', runner.provider],
            ['Owner', `${runner.owner} (${runner.org})`],
            ['Repository', runner.repo],
            ['Workflow', runner.workflow],
            ['Job', runner.job],
            ['Ref', runner.ref],
            ['Created', runner.createdAt],
            ['First seen', runner.firstSeenAt],
            ['Last seen', <time datetime={runner.lastSeenAt}>{relativeTime(runner.lastSeenAt, now)}</time>],
          ]}
        />
      </section>
      {runner.actionsRunID || runner.actionsRunURL || badge ? (
        <section class="card">
          <h2>GitHub Actions</h2>
          <Facts
            rows={[
              ['Run', badge ? <span class={`pill ${badge.tone}`}>{badge.text}</span> : undefined],
              ['Repository', runner.actionsRepo],
              ['Run ID', runner.actionsRunID],
              ['Workflow', runner.actionsWorkflowName],
              ['Links', runner.actionsRunURL || runner.actionsWorkflowURL ? <Links runner={runner} /> : undefined],
            ]}
          />
        </section>
      ) : null}
      {runner.stale ? null : (
        <section class="card">
          <h2>Commands</h2>
          <CopyCommand command={runnerStopCommand(runner)} label="stop command" />
        </section>
      )}
    </>
  )
}

// A fresh schema per use: the API description inlines each route's own schemas.
const Word = () => v.pipe(v.string(), v.maxLength(256))
export const RunnerPageQuery = v.object({ owner: v.optional(Word()), org: v.optional(Word()) })

const HTML_PAGE = v.pipe(v.string(), v.metadata({ contentMediaType: 'text/html' }))

export const RUNNER_PORTAL_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/runners/:provider/:id',
      summary: 'An external runner the caller may see (admins may name owner and org) (HTML)',
      auth: 'user',
      params: { provider: Word(), id: Word() },
      query: RunnerPageQuery,
      response: HTML_PAGE,
    },
    (c, deps, input) =>
      guarded(c, { 404: 'Runner not found' }, (caller) => {
        const parsed = input.safeQuery()
        const which = parsed.success ? parsed.output : {}
        const runner = findRunner(deps.storage, caller.identity, input.param('provider'), input.param('id'), which)
        if (!runner) throw new ApiError(404, ErrorCode.notFound, 'No runner with that ID is visible to you.')
        return page(c, caller, `Runner ${runner.id}`, <RunnerPage runner={runner} now={deps.now()} />)
      }),
  ),
]
