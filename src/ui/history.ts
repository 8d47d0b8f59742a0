import type { RunEventRecord, RunRecord, TestResultSummary } from '../protocol/runs.js'
import { plural } from './format.js'
import { relativeTime, renderTable } from './table.js'

/** `0007 stdout stream=stdout at=… text`: one line per event, long text cut at 120 characters. */
export function formatEvent(event: RunEventRecord): string {
  const fields = [String(event.seq).padStart(4, '0'), event.type]
  if (event.phase) fields.push(`phase=${event.phase}`)
  if (event.stream) fields.push(`stream=${event.stream}`)
  if (event.exitCode !== undefined) fields.push(`exit=${event.exitCode}`)
  fields.push(`at=${event.createdAt}`)
  const text = event.data ?? event.message
  if (text) fields.push(JSON.stringify(text.length > 120 ? `${text.slice(0, 120)}…` : text))
  return fields.join(' ')
}

const seconds = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`)

/** One line per run for `crabbox history`. */
export function formatRun(run: RunRecord): string {
  const exit = run.exitCode === undefined ? '' : ` exit=${run.exitCode}`
  const lease = run.slug ? `${run.leaseID || '-'} (${run.slug})` : run.leaseID || '-'
  const load = run.telemetry?.end?.load1 ?? run.telemetry?.samples?.at(-1)?.load1
  const telemetry = load === undefined ? '' : ` load1=${load}`
  return `${run.id} ${run.state}${exit} ${run.startedAt} duration=${seconds(run.durationMs)} lease=${lease} ${run.provider}${telemetry} ${run.command.join(' ')}`
}

/** `crabbox history` on a terminal: a header, aligned columns, start times relative to now. */
export function renderRunTable(runs: RunRecord[], now = Date.now()): string {
  const rows = runs.map((run) => [
    run.id,
    run.state,
    run.exitCode === undefined ? '-' : String(run.exitCode),
    relativeTime(run.startedAt, now),
    seconds(run.durationMs),
    run.slug || run.leaseID || '-',
    run.command.join(' '),
  ])
  return renderTable(['RUN', 'STATE', 'EXIT', 'STARTED', 'DURATION', 'LEASE', 'COMMAND'], rows).join('\n')
}

/** The human form of a JUnit summary. */
export function formatResults(results: TestResultSummary): string {
  const lines = [
    `${results.format}: ${plural(results.tests, 'test')}, ${plural(results.failures, 'failure')}, ${plural(results.errors, 'error')}, ${results.skipped} skipped in ${results.timeSeconds}s (${plural(results.suites, 'suite')}, ${plural(results.files.length, 'file')})`,
  ]
  for (const failure of results.failed) {
    const where = failure.classname ?? failure.suite
    lines.push(
      `  ${failure.kind === 'error' ? 'ERROR' : 'FAIL'} ${where ? `${where} › ` : ''}${failure.name}${failure.message ? `: ${failure.message.split('\n')[0]}` : ''}`,
    )
  }
  return lines.join('\n')
}
