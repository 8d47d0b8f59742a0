import type { RunEventRecord, RunRecord } from '../../src/protocol/runs.js'
import { runArtifacts, type RunArtifact } from '../fleet/artifacts.js'
import type { FleetDeps } from '../fleet/deps.js'
import { getRun, pageRunEvents, readRunLog } from '../fleet/runs.js'
import { bytes, duration, relativeTime, shellQuote, stateTone } from './format.js'
import { Facts, TableWrap } from './layout.js'
import type { PortalCaller } from './page.js'

/**
 * `/portal/runs/{id}`: the static parts of a run's page (summary, phases, test results,
 * log, events). A running run's page carries what a live script needs to continue from
 * where the page stopped: `#run-live` names the run and the last event sequence number
 * the page shows (`data-after-seq`); `#run-log` and `#run-events` are where lines go.
 */

/** The log tail a run's page shows (the whole retained log is at `…/logs`); keeps a page small. */
export const LOG_TAIL_BYTES = 24 * 1024
/** Rows of the events table. */
export const EVENTS_SHOWN = 100
/** A running run's page builds its log so far from at most this many of its latest events. */
const LIVE_TAIL_EVENTS = 200
/** Failures listed from the test results. */
export const FAILURES_SHOWN = 8

const encoder = new TextEncoder()

/** The last `max` bytes of `text` (whole characters), and whether anything was cut. */
export function tail(text: string, max: number): { text: string; cut: boolean } {
  const encoded = encoder.encode(text)
  if (encoded.length <= max) return { text, cut: false }
  // Skip UTF-8 continuation bytes so the tail starts on a character.
  let start = encoded.length - max
  while (start < encoded.length && (encoded[start]! & 0xc0) === 0x80) start++
  return { text: new TextDecoder().decode(encoded.subarray(start)), cut: true }
}

const isOutput = (event: RunEventRecord) => event.type === 'stdout' || event.type === 'stderr'

/** What the page shows of a run: its record, the first events, the log text and where live updates continue. */
export interface RunView {
  run: RunRecord
  /** The first EVENTS_SHOWN events (the table and the phase times). */
  events: RunEventRecord[]
  /** The last sequence number the page covers (live updates continue after it). */
  afterSeq: number
  log: string
  logCut: boolean
  /** Files published for the run (`crabbox artifacts publish --run`). */
  artifacts: RunArtifact[]
}

/**
 * A running run's output so far: its latest events (sequence numbers have no gaps, so
 * the window starts at `eventCount - LIVE_TAIL_EVENTS`), read page by page to the end.
 */
function liveTail(deps: FleetDeps, run: RunRecord): { output: string; afterSeq: number; cut: boolean } {
  const start = Math.max(0, (run.eventCount ?? 0) - LIVE_TAIL_EVENTS)
  let after = start
  let output = ''
  for (;;) {
    const { events, more } = pageRunEvents(deps.storage, run.id, after, LIVE_TAIL_EVENTS)
    for (const event of events) if (isOutput(event)) output += event.data ?? event.message ?? ''
    // Keep the string bounded while reading.
    if (output.length > LOG_TAIL_BYTES * 4) output = output.slice(-LOG_TAIL_BYTES * 2)
    after = events.at(-1)?.seq ?? after
    if (!more || !events.length) break
  }
  const cut = tail(output, LOG_TAIL_BYTES)
  return { output: cut.text, afterSeq: after, cut: cut.cut || start > 0 }
}

export function runView(deps: FleetDeps, caller: PortalCaller, id: string): RunView {
  const run = getRun(deps.storage, caller.identity, id)
  const { events } = pageRunEvents(deps.storage, id, 0, EVENTS_SHOWN)
  if (run.state === 'running') {
    const live = liveTail(deps, run)
    return { run, events, afterSeq: live.afterSeq, log: live.output, logCut: live.cut, artifacts: runArtifacts(deps.storage, id) }
  }
  const cut = tail(readRunLog(deps.storage, caller.identity, id), LOG_TAIL_BYTES)
  return {
    run,
    events,
    afterSeq: run.eventCount ?? events.at(-1)?.seq ?? 0,
    log: cut.text,
    logCut: cut.cut || run.logTruncated,
    artifacts: runArtifacts(deps.storage, id),
  }
}

function Summary({ run, now }: { run: RunRecord; now: Date }) {
  const rows: [string, unknown][] = [
    ['Lease', run.leaseID ? <a href={`/portal/leases/${run.leaseID}`}>{run.slug || run.leaseID}</a> : 'none'],
    ['Provider', <span class="badge">{run.provider}</span>],
    ['Target', `${run.target}${run.windowsMode ? ` (${run.windowsMode})` : ''}`],
    ['Class', run.class],
    ['Server type', run.serverType],
    ['Owner', `${run.owner} (${run.org})`],
    ['Exit code', run.exitCode],
    ['Started', <time datetime={run.startedAt}>{relativeTime(run.startedAt, now)}</time>],
    ['Duration', run.durationMs !== undefined ? duration(run.durationMs) : run.state === 'running' ? 'running' : undefined],
    ['Phase', <span id="run-phase">{run.phase}</span>],
    ['Log size', run.state === 'running' ? undefined : `${bytes(run.logBytes)}${run.logTruncated ? ' (truncated)' : ''}`],
    ['Events', run.eventCount],
  ]
  return (
    <section class="card" aria-labelledby="summary-title">
      <h2 id="summary-title">Summary</h2>
      <p>
        <code>{run.command.map(shellQuote).join(' ') || '(no command recorded)'}</code>
      </p>
      <Facts rows={rows} />
      <p>
        <a href={`/portal/runs/${run.id}/logs`}>Raw log</a> · <a href={`/portal/runs/${run.id}/events`}>Events (JSON)</a>
      </p>
    </section>
  )
}

/** The run's timing record (sync, command, total) and when each phase began, from its events. */
function Phases({ run, events }: { run: RunRecord; events: RunEventRecord[] }) {
  const started = Date.parse(run.startedAt)
  const firsts = new Map<string, string>()
  for (const event of events) if (event.phase && !firsts.has(event.phase)) firsts.set(event.phase, event.createdAt)
  return (
    <section class="card" aria-labelledby="phases-title">
      <h2 id="phases-title">Phases</h2>
      <dl class="facts">
        <dt>Sync</dt>
        <dd>{duration(run.syncMs)}</dd>
        <dt>Command</dt>
        <dd>{duration(run.commandMs)}</dd>
        <dt>Total</dt>
        <dd>{duration(run.durationMs)}</dd>
        {[...firsts].map(([phase, at]) => (
          <>
            <dt>{phase}</dt>
            <dd>+{duration(Date.parse(at) - started)}</dd>
          </>
        ))}
      </dl>
    </section>
  )
}

function Results({ run }: { run: RunRecord }) {
  const results = run.results
  if (!results) return null
  return (
    <section class="card" aria-labelledby="results-title">
      <h2 id="results-title">Test results</h2>
      <p>
        {results.tests} tests, {results.failures} failures, {results.errors} errors, {results.skipped} skipped in{' '}
        {duration(results.timeSeconds * 1000)} ({results.format}, {results.files.length} files)
      </p>
      {results.failed.length ? (
        <ol>
          {results.failed.slice(0, FAILURES_SHOWN).map((failure) => (
            <li>
              <strong>{failure.name}</strong> <span class="muted">{failure.suite}</span>
              {failure.message ? <pre tabindex={0}>{failure.message}</pre> : null}
            </li>
          ))}
        </ol>
      ) : null}
    </section>
  )
}

/** The run's published files, each a link that opens only for those who can see the run. */
function Artifacts({ run, artifacts }: { run: RunRecord; artifacts: RunArtifact[] }) {
  if (!artifacts.length) return null
  return (
    <section class="card" aria-labelledby="artifacts-title">
      <h2 id="artifacts-title">Artifacts</h2>
      <ul id="run-artifacts">
        {artifacts.map((artifact) => (
          <li>
            <a href={`/portal/runs/${run.id}/artifact?name=${encodeURIComponent(artifact.name)}`}>{artifact.name}</a>{' '}
            <span class="muted">{bytes(artifact.size)}</span>
          </li>
        ))}
      </ul>
    </section>
  )
}

function EventsTable({ run, events, now }: { run: RunRecord; events: RunEventRecord[]; now: Date }) {
  const shown = events.slice(0, EVENTS_SHOWN)
  return (
    <section class="card" aria-labelledby="events-title">
      <h2 id="events-title">Events</h2>
      <TableWrap label="Events table">
        <table>
          <caption class="muted">
            {(run.eventCount ?? events.length) > shown.length ? `The first ${shown.length} of ${run.eventCount} events` : 'All events'}
          </caption>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Type</th>
              <th scope="col">Phase</th>
              <th scope="col">Message</th>
              <th scope="col" class="wide">
                When
              </th>
            </tr>
          </thead>
          <tbody id="run-events">
            {shown.map((event) => (
              <tr>
                <td>{event.seq}</td>
                <td>{event.type}</td>
                <td>{event.phase ?? ''}</td>
                <td class="mono">{(event.message ?? event.data ?? '').slice(0, 160)}</td>
                <td class="wide">
                  <time datetime={event.createdAt}>{relativeTime(event.createdAt, now)}</time>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
    </section>
  )
}

export function RunPage({ view, now }: { view: RunView; now: Date }) {
  const { run } = view
  // The page's script (worker/portal/live-run.ts) follows a running run from `data-after-seq` on.
  const running = run.state === 'running'
  return (
    <>
      <h1>
        Run <span class="mono">{run.id}</span>{' '}
        <span id="run-state" class={`pill ${stateTone(run.state)}`}>
          {run.state}
        </span>
      </h1>
      <div
        id="run-live"
        data-run-id={run.id}
        data-state={run.state}
        data-after-seq={String(view.afterSeq)}
        data-events-shown={String(Math.min(view.events.length, EVENTS_SHOWN))}
      >
        {running ? (
          <p id="run-live-status" class="muted" role="status">
            Still running. Reload for more output (live output needs JavaScript).
          </p>
        ) : null}
      </div>
      <div class="grid">
        <Summary run={run} now={now} />
        <Phases run={run} events={view.events} />
      </div>
      <Results run={run} />
      <Artifacts run={run} artifacts={view.artifacts} />
      <section class="card" aria-labelledby="log-title">
        <h2 id="log-title">Log</h2>
        {view.logCut ? <p class="muted">Showing the end of the log. The raw log has the rest that was kept.</p> : null}
        {/* While running, a fixed height: arriving lines scroll inside the box and nothing else moves. */}
        <pre id="run-log" class={running ? 'live-log' : undefined} tabindex={0} aria-label="Run log">
          {view.log}
        </pre>
      </section>
      <EventsTable run={run} events={view.events} now={now} />
    </>
  )
}
