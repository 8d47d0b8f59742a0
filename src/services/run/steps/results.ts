import { randomBytes } from 'node:crypto'
import type { TestResultSummary } from '../../../protocol/runs.js'
import { shellQuote } from '../../../transport/ssh/exec.js'
import type { SshSession } from '../../../transport/ssh/types.js'
import type { Progress } from '../../../ui/progress.js'
import { formatResults } from '../../../ui/history.js'
import type { JunitFile } from '../junit.js'

/** Each file is read up to this many bytes; the summary is bounded anyway. */
const FILE_MAX_BYTES = 4 * 1024 * 1024

/**
 * Prints every file the patterns name, relative to the workdir: `$1` is the
 * workdir, the rest are patterns. Globs expand on the runner (word splitting
 * only on newlines, so a pattern with spaces stays whole); each file starts
 * with a `<marker> F <path>` line, a pattern that matched nothing is `<marker> M <pattern>`.
 */
const readScript = (marker: string) =>
  [
    'cd "$1" 2>/dev/null || exit 0',
    'shift',
    "IFS='\n'",
    'for p in "$@"; do',
    '  found=',
    '  for f in $p; do',
    `    [ -f "$f" ] || continue; found=1; printf '\\n${marker} F %s\\n' "$f"; head -c ${FILE_MAX_BYTES} "$f"`,
    '  done',
    `  [ -n "$found" ] || printf '\\n${marker} M %s\\n' "$p"`,
    'done',
  ].join('\n')

/** Comma-separated, trimmed, empty items dropped. */
export const junitPatterns = (values: readonly string[]): string[] =>
  values
    .flatMap((value) => value.split(','))
    .map((item) => item.trim())
    .filter(Boolean)

/** Splits the script's output into the files it printed and the patterns that matched nothing. */
export function splitMarked(output: string, marker: string): { files: JunitFile[]; missing: string[] } {
  const files: JunitFile[] = []
  const missing: string[] = []
  const parts = output.split(`\n${marker} `).slice(1)
  for (const part of parts) {
    const newline = part.indexOf('\n')
    const header = newline < 0 ? part : part.slice(0, newline)
    const body = newline < 0 ? '' : part.slice(newline + 1)
    if (header.startsWith('F ')) files.push({ path: header.slice(2), text: body })
    else if (header.startsWith('M ')) missing.push(header.slice(2))
  }
  return { files, missing }
}

/**
 * Reads the JUnit files the patterns name from the runner (one exec), parses
 * them and prints a one-line summary on stderr. Missing or malformed files are
 * warnings; this never throws, so the run keeps the command's exit code.
 */
export async function collectJunit(
  session: SshSession,
  workdir: string,
  patterns: string[],
  progress: Progress,
): Promise<TestResultSummary | undefined> {
  if (patterns.length === 0) return undefined
  const marker = `@@crabbox-junit-${randomBytes(6).toString('hex')}@@`
  const chunks: Buffer[] = []
  try {
    await session.exec(`sh -c ${shellQuote(readScript(marker))} sh ${[workdir, ...patterns].map(shellQuote).join(' ')}`, {
      onStdout: (chunk) => chunks.push(chunk),
    })
  } catch (error) {
    progress.warn(`junit: could not read the result files: ${(error as Error).message}`)
    return undefined
  }
  const { files, missing } = splitMarked(Buffer.concat(chunks).toString('utf8'), marker)
  for (const pattern of missing) progress.warn(`junit: no file matches ${pattern}`)
  // The XML parser loads only for runs that read results.
  const { parseJunitFiles } = await import('../junit.js')
  const { summary, warnings } = parseJunitFiles(files)
  for (const warning of warnings) progress.warn(`junit: ${warning}`)
  // One line: the counts, without the failure list (`crabbox results` shows that).
  if (summary) process.stderr.write(`${formatResults({ ...summary, failed: [] })}\n`)
  return summary
}
