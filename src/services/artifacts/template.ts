import { readFile, writeFile } from 'node:fs/promises'
import { CrabboxError, usageError } from '../../errors.js'
import type { RunRecord, TestResultSummary } from '../../protocol/runs.js'
import { parseJunitFiles } from '../run/junit.js'

/**
 * `crabbox artifacts template`: a Markdown report for a pull request or a bug:
 * the before and after media, the test summary (from a run record such as the
 * `run.json` that `artifacts collect --run` writes, from `results --json`, or
 * from JUnit XML), or a summary text, and links to every file.
 */

export const TEMPLATE_KINDS = ['openclaw', 'mantis'] as const
export type TemplateKind = (typeof TEMPLATE_KINDS)[number]

export interface TemplateOptions {
  kind: TemplateKind
  before?: string
  after?: string
  summary?: string
  summaryFile?: string
  output?: string
  /** The broker's URL: the run links to its portal page. */
  broker?: string
}

export interface TemplateResult {
  kind: TemplateKind
  output?: string
  markdown: string
  results?: TestResultSummary
  run?: string
}

const HEADINGS: Record<TemplateKind, { title: string; before: string; after: string }> = {
  openclaw: { title: 'QA summary', before: 'Before', after: 'After' },
  mantis: { title: 'Bug report', before: 'Reproduction (before)', after: 'Fixed (after)' },
}

const IMAGE = /\.(png|jpe?g|gif|webp|svg)$/i

/** A media file as Markdown: images inline, anything else (an MP4) as a link. */
export function mediaMarkdown(label: string, path: string): string {
  const target = encodeURI(path).replace(/[()]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  const name = path.split(/[\\/]/).pop() ?? path
  return IMAGE.test(path) ? `![${label}](${target})` : `[${label}: ${name}](${target})`
}

/** What a summary file holds: a run record, a results summary, JUnit XML, or plain text. */
export function readSummary(text: string, path: string): { results?: TestResultSummary; run?: RunRecord; text?: string } {
  const trimmed = text.trim()
  if (trimmed.startsWith('<')) {
    const parsed = parseJunitFiles([{ path, text }])
    if (!parsed.summary) throw usageError(`--summary-file ${path}: not JUnit XML (${parsed.warnings.join('; ')})`)
    return { results: parsed.summary }
  }
  if (trimmed.startsWith('{')) {
    let value: Record<string, unknown>
    try {
      value = JSON.parse(trimmed) as Record<string, unknown>
    } catch (error) {
      throw usageError(`--summary-file ${path}: not valid JSON (${(error as Error).message})`)
    }
    if (typeof value.id === 'string' && 'state' in value)
      return { run: value as unknown as RunRecord, results: value.results as TestResultSummary | undefined }
    if (typeof value.tests === 'number') return { results: value as unknown as TestResultSummary }
    throw usageError(`--summary-file ${path}: JSON that is neither a run record nor a test summary`)
  }
  return { text: trimmed }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`

/** The test summary as Markdown: one line of counts, then each failure. */
export function resultsMarkdown(results: TestResultSummary): string[] {
  const ok = results.failures === 0 && results.errors === 0
  const lines = [
    `${ok ? '✅' : '❌'} ${plural(results.tests, 'test')}, ${plural(results.failures, 'failure')}, ${plural(results.errors, 'error')}, ${results.skipped} skipped in ${results.timeSeconds}s`,
  ]
  if (results.failed.length) lines.push('', '| Test | Message |', '| --- | --- |')
  for (const failure of results.failed) {
    const where = failure.classname ?? failure.suite
    const message = (failure.message ?? '').split('\n')[0].replaceAll('|', '\\|')
    lines.push(
      `| ${failure.kind === 'error' ? 'ERROR ' : ''}${where ? `${where} › ` : ''}${failure.name.replaceAll('|', '\\|')} | ${message} |`,
    )
  }
  return lines
}

const runLink = (id: string, broker?: string) =>
  broker ? `[\`${id}\`](${broker.replace(/\/+$/, '')}/portal/runs/${encodeURIComponent(id)})` : `\`${id}\``

export function renderTemplate(options: TemplateOptions, found: { results?: TestResultSummary; run?: RunRecord; text?: string }): string {
  const heading = HEADINGS[options.kind]
  const lines = [`## ${heading.title}`, '']
  if (options.before || options.after) {
    lines.push(`| ${heading.before} | ${heading.after} |`, '| --- | --- |')
    const cell = (label: string, path?: string) => (path ? mediaMarkdown(label, path) : '—')
    lines.push(`| ${cell(heading.before, options.before)} | ${cell(heading.after, options.after)} |`, '')
  }
  if (found.text) lines.push(found.text, '')
  if (found.results) lines.push('### Tests', '', ...resultsMarkdown(found.results), '')
  const links = [
    ...(found.run
      ? [
          `- Run ${runLink(found.run.id, options.broker)} (${found.run.state}${found.run.exitCode === undefined ? '' : `, exit ${found.run.exitCode}`}) on lease \`${found.run.leaseID}\``,
        ]
      : []),
    ...[options.before, options.after].filter((p): p is string => Boolean(p)).map((p) => `- [${p.split(/[\\/]/).pop()}](${encodeURI(p)})`),
  ]
  if (links.length) lines.push('### Links', '', ...links, '')
  lines.push('<sub>Made with crabbox</sub>', '')
  return lines.join('\n')
}

export async function artifactsTemplate(options: TemplateOptions): Promise<TemplateResult> {
  if (!(TEMPLATE_KINDS as readonly string[]).includes(options.kind))
    throw usageError(`unknown template kind ${JSON.stringify(options.kind)}`, `Use one of: ${TEMPLATE_KINDS.join(', ')}.`)
  if (options.summary !== undefined && options.summaryFile !== undefined)
    throw usageError('--summary and --summary-file both given', 'Pass the summary text or a file, not both.')
  let found: ReturnType<typeof readSummary> = {}
  if (options.summaryFile !== undefined) {
    let text: string
    try {
      text = await readFile(options.summaryFile, 'utf8')
    } catch {
      throw new CrabboxError(`no summary file at ${options.summaryFile}`, { exit: 'notFound', code: 'not_found' })
    }
    found = readSummary(text, options.summaryFile)
  } else if (options.summary !== undefined) found = { text: options.summary.trim() }
  const markdown = renderTemplate(options, found)
  if (options.output) await writeFile(options.output, markdown)
  return { kind: options.kind, output: options.output, markdown, results: found.results, run: found.run?.id }
}
