import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { RUN_LIMITS, truncateUtf8, type TestFailure, type TestResultSummary } from '../../protocol/runs.js'

/**
 * JUnit XML → the bounded test result summary a finished run carries. Roots are
 * `<testsuites>` or `<testsuite>`; suites may nest. A suite's counts come from
 * its attributes, or from its test cases when the attributes are missing or zero.
 * A file that is not XML, or not JUnit, is a warning: it never fails the run.
 */

export interface JunitFile {
  path: string
  text: string
}

export interface JunitParse {
  /** Undefined when no file parsed. */
  summary?: TestResultSummary
  warnings: string[]
}

type Node = Record<string, unknown>

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  attributesGroupName: '@',
  textNodeName: '#text',
  parseAttributeValue: false,
  parseTagValue: false,
  trimValues: true,
  isArray: (name) => ['testsuite', 'testcase', 'failure', 'error', 'skipped'].includes(name),
})

const text = (value: unknown) => truncateUtf8(String(value), RUN_LIMITS.resultText)
const attrs = (node: Node): Record<string, string> => (node['@'] as Record<string, string> | undefined) ?? {}
const list = (node: Node, name: string): Node[] =>
  ((node[name] as unknown[] | undefined) ?? []).map((item) =>
    typeof item === 'object' && item !== null ? (item as Node) : { '#text': item },
  )
const number = (value: string | undefined) => {
  const parsed = value === undefined ? Number.NaN : Number(value)
  return Number.isFinite(parsed) && parsed >= 0 ? parsed : 0
}

interface Counts {
  suites: number
  tests: number
  failures: number
  errors: number
  skipped: number
  timeSeconds: number
}

const zero = (): Counts => ({ suites: 0, tests: 0, failures: 0, errors: 0, skipped: 0, timeSeconds: 0 })

function add(into: Counts, from: Counts): void {
  for (const key of Object.keys(into) as (keyof Counts)[]) into[key] += from[key]
}

/** Counts one suite (recursing into nested suites) and collects its failed cases. */
function walkSuite(suite: Node, failed: TestFailure[], inheritedFile?: string): Counts {
  const a = attrs(suite)
  const name = a.name ?? ''
  const file = a.file ?? inheritedFile
  const counts = zero()
  for (const child of list(suite, 'testsuite')) add(counts, walkSuite(child, failed, file))

  const cases = list(suite, 'testcase')
  const counted = zero()
  for (const testcase of cases) {
    const c = attrs(testcase)
    counted.tests++
    counted.timeSeconds += number(c.time)
    if (list(testcase, 'skipped').length > 0) counted.skipped++
    for (const kind of ['failure', 'error'] as const) {
      const problems = list(testcase, kind)
      if (problems.length === 0) continue
      if (kind === 'failure') counted.failures++
      else counted.errors++
      const problem = problems[0]!
      const p = attrs(problem)
      const message = p.message ?? (problem['#text'] === undefined ? undefined : String(problem['#text']).split('\n')[0])
      failed.push({
        suite: text(name),
        name: text(c.name ?? ''),
        ...(c.classname ? { classname: text(c.classname) } : {}),
        ...((c.file ?? file) ? { file: text(c.file ?? file) } : {}),
        ...(message ? { message: text(message) } : {}),
        ...(p.type ? { type: text(p.type) } : {}),
        kind,
      })
    }
  }
  // A suite of its own cases counts once; a pure container counts only its children.
  if (cases.length > 0 || counts.suites === 0) {
    counts.suites++
    const own = (attribute: string, fallback: number) => number(a[attribute]) || fallback
    if (counts.suites === 1 && counts.tests === 0) {
      counts.tests = own('tests', counted.tests)
      counts.failures = own('failures', counted.failures)
      counts.errors = own('errors', counted.errors)
      counts.skipped = number(a.skipped) || number(a.disabled) || counted.skipped
      counts.timeSeconds = own('time', counted.timeSeconds)
    } else {
      add(counts, { ...counted, suites: 0 })
    }
  }
  return counts
}

/** Parses one file's text; throws with the reason when it is not JUnit XML. */
export function parseJunitText(xml: string, failed: TestFailure[]): Counts {
  const valid = XMLValidator.validate(xml)
  if (valid !== true) throw new Error(`not valid XML (line ${valid.err.line}: ${valid.err.msg})`)
  const doc = parser.parse(xml) as Node
  const counts = zero()
  if (doc.testsuites !== undefined) {
    const roots = doc.testsuites
    const root = (typeof roots === 'object' && roots !== null ? roots : {}) as Node
    for (const suite of list(root, 'testsuite')) add(counts, walkSuite(suite, failed))
    return counts
  }
  const suites = doc.testsuite as Node[] | undefined
  if (!suites) throw new Error('no <testsuites> or <testsuite> root')
  for (const suite of suites) add(counts, walkSuite(typeof suite === 'object' && suite !== null ? suite : {}, failed))
  return counts
}

/** Sums every readable file into one bounded summary; each unreadable one is a warning. */
export function parseJunitFiles(files: JunitFile[]): JunitParse {
  const warnings: string[] = []
  const failed: TestFailure[] = []
  const total = zero()
  const parsed: string[] = []
  for (const file of files) {
    const mine: TestFailure[] = []
    try {
      add(total, parseJunitText(file.text, mine))
      parsed.push(file.path)
      failed.push(...mine)
    } catch (error) {
      warnings.push(`${file.path}: ${(error as Error).message}`)
    }
  }
  if (parsed.length === 0) return { warnings }
  return {
    summary: {
      format: 'junit',
      files: parsed.slice(0, RUN_LIMITS.resultFiles).map(text),
      ...total,
      timeSeconds: Math.round(total.timeSeconds * 1000) / 1000,
      failed: failed.slice(0, RUN_LIMITS.resultFailures),
    },
    warnings,
  }
}
