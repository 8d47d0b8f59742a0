import { appendFileSync } from 'node:fs'
import type { TestResultSummary } from '../protocol/runs.js'
import type { RunTiming } from '../services/run/timing.js'
import { formatMs } from './format.js'

/** What the summary shows beyond the timing: the JUnit counts and the run's portal page (broker runs). */
export interface JobSummaryExtras {
  results?: TestResultSummary
  portalUrl?: string
}

/**
 * On GitHub Actions (`GITHUB_STEP_SUMMARY` set), appends the run as a small
 * Markdown table to the job summary: exit code, lease, the timing phases (sync's
 * own phases included), the JUnit counts and the portal link when there are
 * some. A summary that cannot be written is skipped.
 */
export function writeJobSummary(timing: RunTiming, env: NodeJS.ProcessEnv = process.env, extras: JobSummaryExtras = {}): void {
  const file = env.GITHUB_STEP_SUMMARY
  if (!file || env.GITHUB_ACTIONS !== 'true') return
  const phases = timing.syncPhases.filter((phase) => !phase.skipped).map((phase) => `${phase.name} ${formatMs(phase.ms)}`)
  const { results, portalUrl } = extras
  const rows = [
    ['exit', String(timing.exitCode)],
    ['lease', `${timing.slug} (${timing.provider})`],
    ['total', formatMs(timing.totalMs)],
    ['sync', `${formatMs(timing.syncMs)}${timing.syncSkipped ? ' (skipped)' : ''}${phases.length > 0 ? `: ${phases.join(', ')}` : ''}`],
    ['command', formatMs(timing.commandMs)],
    ...(results
      ? [['tests', `${results.tests} tests, ${results.failures} failures, ${results.errors} errors, ${results.skipped} skipped`]]
      : []),
    ...(portalUrl ? [['portal', `[${timing.runId ?? 'run'}](${portalUrl})`]] : []),
  ]
  const table = ['| crabbox run | |', '| --- | --- |', ...rows.map(([key, value]) => `| ${key} | ${value.replaceAll('|', '\\|')} |`)].join(
    '\n',
  )
  try {
    appendFileSync(file, `${table}\n\n`)
  } catch {
    // The job summary is a courtesy: never fail the run over it.
  }
}
