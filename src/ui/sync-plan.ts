import type { SyncPlanSummary } from '../services/sync/summary.js'
import { formatBytes, plural } from './format.js'

/** Human rendering of a plan, one line per fact, for stdout. */
export function renderSyncPlan(plan: SyncPlanSummary): string[] {
  const size = (bytes: number) => formatBytes(bytes).padStart(9)
  const lines = [`sync candidate: ${plural(plan.files, 'file')}, ${formatBytes(plan.bytes)} (${plan.git ? 'git' : 'folder'} ${plan.root})`]
  lines.push(`deleted tracked files: ${plan.deletedTracked}`)
  for (const path of plan.deleted) lines.push(`  ${path}`)
  if (plan.rejected.length > 0) {
    lines.push(`unsafe paths left out: ${plan.rejected.length}`)
    for (const { path, reason } of plan.rejected) lines.push(`  ${path}: ${reason}`)
  }
  lines.push('largest files:')
  for (const file of plan.largestFiles) lines.push(`${size(file.bytes)}  ${file.path}`)
  lines.push('largest folders:')
  for (const dir of plan.largestDirs)
    lines.push(`${size(dir.bytes)}  ${String(dir.files).padStart(6)} ${dir.files === 1 ? 'file ' : 'files'}  ${dir.path}`)
  return lines
}
