import type { PublishResult } from '../services/artifacts/publish.js'

/** `artifacts publish` for people: one line per file, then where the report and the comment went. */
export function renderPublish(result: PublishResult): string {
  const lines: string[] = []
  const where = `${result.storage}${result.bucket ? ` ${result.bucket}` : ''}${result.prefix ? ` prefix=${result.prefix}` : ''}`
  const bytes = result.files.reduce((sum, file) => sum + file.size, 0)
  lines.push(`${result.dryRun ? 'would publish' : 'published'} ${result.files.length} files (${bytes} bytes) to ${where}`)
  for (const file of result.files) lines.push(`  ${file.name}  ${file.size}  ${file.url || file.key}`)
  if (result.run) lines.push(`run ${result.run} (listed on its portal page)`)
  if (result.report) lines.push(`report ${result.report}`)
  if (result.comment) {
    const target = `${result.comment.repo}#${result.comment.pr}`
    lines.push(
      result.comment.action === 'skipped'
        ? `comment on ${target}: not posted (--dry-run)`
        : `comment ${result.comment.action} on ${target}${result.comment.url ? ` ${result.comment.url}` : ''}`,
    )
  }
  if (result.dryRun) lines.push('', result.markdown)
  return `${lines.join('\n')}\n`
}
