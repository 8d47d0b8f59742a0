import * as v from 'valibot'
import { ListRunsQuery, RUN_STATES, type RunRecord } from '../../src/protocol/runs.js'
import type { LeaseRecord, LeaseTelemetry } from '../../src/protocol/leases.js'
import { canManageLease, leaseRole } from '../auth/identity.js'
import type { FleetDeps } from '../fleet/deps.js'
import { resolveLease } from '../fleet/lease-store.js'
import { listRuns } from '../fleet/runs.js'
import { Sparkline } from './charts.js'
import { bytes, duration, relativeTime, shellQuote, stateTone } from './format.js'
import { CopyCommand, Facts, TableWrap } from './layout.js'
import { leaseCommands } from './lease-grid.js'
import { CsrfField, type PortalCaller } from './page.js'

/** `/portal/leases/{id}`: status, telemetry, access, recent runs and (for managers) stop. */

export const RECENT_RUNS = 12

export const LeasePageQuery = v.object({ runs: v.optional(v.pipe(v.string(), v.maxLength(16))) })

const percent = (value: number | undefined) => (value === undefined ? undefined : `${Math.round(value)}%`)

function latestTelemetry(t: LeaseTelemetry | undefined): [string, unknown][] {
  if (!t) return [['Telemetry', <span class="muted">none yet</span>]]
  return [
    [
      'Load',
      t.load1 === undefined
        ? undefined
        : [t.load1, t.load5, t.load15]
            .filter((n) => n !== undefined)
            .map((n) => n.toFixed(2))
            .join(' / '),
    ],
    ['Memory', t.memoryPercent === undefined ? undefined : `${percent(t.memoryPercent)} of ${bytes(t.memoryTotalBytes)}`],
    ['Disk', t.diskPercent === undefined ? undefined : `${percent(t.diskPercent)} of ${bytes(t.diskTotalBytes)}`],
    ['Uptime', t.uptimeSeconds === undefined ? undefined : duration(t.uptimeSeconds * 1000)],
  ]
}

function StatusCard({ lease, caller, now }: { lease: LeaseRecord; caller: PortalCaller; now: Date }) {
  const live = lease.state === 'active' || lease.state === 'provisioning'
  const ssh = lease.host
    ? `${lease.sshUser ?? 'crabbox'}@${lease.host}${lease.sshPort && lease.sshPort !== '22' ? ` port ${lease.sshPort}` : ''}`
    : undefined
  return (
    <section class="card" aria-labelledby="status-title">
      <h2 id="status-title">
        Status <span class={`pill ${stateTone(lease.state)}`}>{lease.state}</span>
      </h2>
      <Facts
        rows={[
          ['Provider', <span class="badge">{lease.provider}</span>],
          ['Target', `${lease.target}${lease.windowsMode ? ` (${lease.windowsMode})` : ''}`],
          ['Class', lease.class],
          ['Server type', lease.serverType],
          ['Host', lease.host],
          ['SSH', ssh],
          ['Work root', lease.workRoot],
          ['Owner', `${lease.owner} (${lease.org})`],
          ['Created', <time datetime={lease.createdAt}>{relativeTime(lease.createdAt, now)}</time>],
          [
            live ? 'Expires' : 'Ended',
            live ? (
              <time datetime={lease.expiresAt} data-countdown="">
                {relativeTime(lease.expiresAt, now)}
              </time>
            ) : (
              <time datetime={lease.endedAt ?? lease.updatedAt}>{relativeTime(lease.endedAt ?? lease.updatedAt, now)}</time>
            ),
          ],
          ...latestTelemetry(lease.telemetry),
        ]}
      />
      {live && canManageLease(lease, caller.identity) ? (
        <form method="post" action={`/portal/leases/${lease.id}/release`}>
          <CsrfField caller={caller} />
          <p>
            <button class="danger" type="submit">
              Stop lease and delete its machine
            </button>
          </p>
        </form>
      ) : null}
    </section>
  )
}

function TelemetryCard({ lease }: { lease: LeaseRecord }) {
  const history = lease.telemetryHistory ?? []
  const series = (key: 'load1' | 'memoryPercent' | 'diskPercent') =>
    history.map((sample) => sample[key]).filter((value): value is number => value !== undefined)
  return (
    <section class="card" aria-labelledby="telemetry-title">
      <h2 id="telemetry-title">Telemetry</h2>
      {history.length ? (
        <>
          <Sparkline label="Load (1 min)" values={series('load1')} />
          <Sparkline label="Memory used" values={series('memoryPercent')} max={100} unit="%" />
          <Sparkline label="Disk used" values={series('diskPercent')} max={100} unit="%" />
        </>
      ) : (
        <p class="muted">No heartbeat telemetry yet.</p>
      )}
    </section>
  )
}

function AccessCard({ lease, caller }: { lease: LeaseRecord; caller: PortalCaller }) {
  const commands = leaseCommands(lease)
  const live = lease.state === 'active' || lease.state === 'provisioning'
  return (
    <section class="card" aria-labelledby="access-title">
      <h2 id="access-title">Access</h2>
      {live ? (
        <>
          <CopyCommand command={commands.ssh} label="ssh command" />
          <CopyCommand command={commands.run} label="run command" />
          <CopyCommand command={commands.stop} label="stop command" />
        </>
      ) : (
        <p class="muted">This lease has ended.</p>
      )}
      <p class="muted">Your role: {leaseRole(lease, caller.identity) ?? 'none'}</p>
      {live && lease.desktop ? (
        <p>
          <a href={`/portal/leases/${lease.id}/vnc`}>Open the desktop (WebVNC)</a>
        </p>
      ) : null}
      {canManageLease(lease, caller.identity) ? (
        <p>
          <a href={`/portal/leases/${lease.id}/share`}>Share this lease</a>
        </p>
      ) : null}
    </section>
  )
}

const RUN_FILTERS = ['all', ...RUN_STATES] as const

export function RunsTable({ runs, now, caption }: { runs: RunRecord[]; now: Date; caption: string }) {
  return (
    <TableWrap label={caption}>
      <table>
        <caption class="muted">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Run</th>
            <th scope="col">State</th>
            <th scope="col">Command</th>
            <th scope="col" class="wide">
              Started
            </th>
            <th scope="col" class="wide">
              Duration
            </th>
          </tr>
        </thead>
        <tbody>
          {runs.length ? (
            runs.map((run) => (
              <tr>
                <td>
                  <a href={`/portal/runs/${run.id}`} class="mono">
                    {run.id}
                  </a>
                </td>
                <td>
                  <span class={`pill ${stateTone(run.state)}`}>{run.state}</span>
                  {run.exitCode !== undefined ? <span class="muted"> exit {run.exitCode}</span> : null}
                </td>
                <td>
                  <code>{run.command.map(shellQuote).join(' ')}</code>
                </td>
                <td class="wide">
                  <time datetime={run.startedAt}>{relativeTime(run.startedAt, now)}</time>
                </td>
                <td class="wide">{duration(run.durationMs)}</td>
              </tr>
            ))
          ) : (
            <tr>
              <td colspan={5} class="muted">
                No runs.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </TableWrap>
  )
}

function RecentRuns({
  deps,
  caller,
  lease,
  filter,
  now,
}: {
  deps: FleetDeps
  caller: PortalCaller
  lease: LeaseRecord
  filter: string
  now: Date
}) {
  const query = v.parse(ListRunsQuery, { leaseID: lease.id, limit: String(RECENT_RUNS), ...(filter !== 'all' ? { state: filter } : {}) })
  // Runs are never shared: a sharee sees their own runs on this lease, the owner and admins theirs.
  const { runs } = listRuns(deps.storage, caller.identity, query)
  return (
    <section class="card" aria-labelledby="runs-title">
      <h2 id="runs-title">Recent runs</h2>
      <nav aria-label="Run filter">
        {RUN_FILTERS.map((name) => (
          <>
            <a href={`/portal/leases/${lease.id}?runs=${name}`} {...(name === filter ? { 'aria-current': 'page' as const } : {})}>
              {name}
            </a>{' '}
          </>
        ))}
      </nav>
      <RunsTable runs={runs} now={now} caption={`The ${RECENT_RUNS} latest runs you can see on this lease`} />
    </section>
  )
}

/** The lease `ref` names, if the caller may see it (404 otherwise, as on the API). */
export const visibleLease = (deps: FleetDeps, caller: PortalCaller, ref: string): LeaseRecord =>
  resolveLease(deps.storage, caller.identity, ref, deps.now())

export function LeasePage({ deps, caller, lease, filter }: { deps: FleetDeps; caller: PortalCaller; lease: LeaseRecord; filter?: string }) {
  const now = deps.now()
  const runFilter = (RUN_FILTERS as readonly string[]).includes(filter ?? '') ? filter! : 'all'
  return (
    <>
      <h1>
        {lease.slug || lease.id} <span class="muted mono">{lease.id}</span>
      </h1>
      <div class="grid">
        <StatusCard lease={lease} caller={caller} now={now} />
        <TelemetryCard lease={lease} />
        <AccessCard lease={lease} caller={caller} />
      </div>
      <RecentRuns deps={deps} caller={caller} lease={lease} filter={runFilter} now={now} />
    </>
  )
}
