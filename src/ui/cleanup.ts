import type { CleanupResult } from '../services/cleanup.js'

/** `crabbox cleanup`: one tab-separated line per machine, then the totals. */
export function renderCleanup(result: CleanupResult): string {
  const verb = result.dryRun ? 'would delete' : 'deleted'
  const lines = [
    ...result.deleted.map((i) => `${verb}\t${i.name}\t${i.lease ?? '-'}\t${i.status}\t${i.reason}`),
    ...result.kept.map((i) => `kept\t${i.name}\t${i.lease ?? '-'}\t${i.status}\t${i.reason}`),
  ]
  lines.push(
    `${result.provider}: ${result.deleted.length} ${verb}, ${result.kept.length} kept${result.dryRun ? ' (dry run: nothing was deleted)' : ''}`,
  )
  return `${lines.join('\n')}\n`
}
