import { appendFileSync } from 'node:fs'
import type { RunTiming } from '../services/run/timing.js'
import { formatMs } from './format.js'

/**
 * On GitHub Actions (`GITHUB_STEP_SUMMARY` set), appends the run as a small
 * Markdown table to the job summary. A summary that cannot be written is skipped.
 */
export function writeJobSummary(timing: RunTiming, env: NodeJS.ProcessEnv = process.env): void {
  const file = env.GITHUB_STEP_SUMMARY
  if (!file || env.GITHUB_ACTIONS !== 'true') return
  const rows = [
    ['exit', String(timing.exitCode)],
    ['lease', `${timing.slug} (${timing.provider})`],
    ['total', formatMs(timing.totalMs)],
    ['sync', `${formatMs(timing.syncMs)}${timing.syncSkipped ? ' (skipped)' : ''}`],
    ['command', formatMs(timing.commandMs)],
  ]
  const table = ['| crabbox run | |', '| --- | --- |', ...rows.map(([key, value]) => `| ${key} | ${value} |`)].join('\n')
  try {
    appendFileSync(file, `${table}\n\n`)
  } catch {
    // The job summary is a courtesy: never fail the run over it.
  }
}
