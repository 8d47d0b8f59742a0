import type { Config } from '../../config/schema.js'
import { parseDuration } from '../../config/schema.js'
import { usageError } from '../../errors.js'

/** A Blacksmith Testbox ID as the `blacksmith` CLI prints it. */
export const TESTBOX_ID = /\btbx_[A-Za-z0-9_-]+\b/

/** One row of `blacksmith testbox list`: `ID STATUS REPO WORKFLOW JOB REF CREATED`. */
export interface TestboxRow {
  id: string
  status: string
  repo: string
  workflow: string
  job: string
  ref: string
  created: string
}

const base = (config: Config) => (config.blacksmith.org ? ['--org', config.blacksmith.org] : [])

/** The idle timeout in whole minutes, rounded up, at least 1: `blacksmith.idleTimeout`, else the lease's. */
export function idleMinutes(config: Config): number {
  const ms = parseDuration(config.blacksmith.idleTimeout ?? config.idleTimeout)
  return Math.max(1, Math.ceil(ms / 60_000))
}

/** `testbox warmup <workflow> [--job] [--ref] --ssh-public-key <key> --idle-timeout <minutes>`. */
export function warmupArgs(config: Config, publicKey: string): string[] {
  const { workflow, job, ref } = config.blacksmith
  if (!workflow)
    throw usageError(
      'blacksmith-testbox needs a workflow',
      'set blacksmith.workflow in crabbox.yaml or CRABBOX_BLACKSMITH_WORKFLOW (the Testbox workflow file, name or ID)',
    )
  return [
    ...base(config),
    'testbox',
    'warmup',
    workflow,
    ...(job ? ['--job', job] : []),
    ...(ref ? ['--ref', ref] : []),
    ...(publicKey ? ['--ssh-public-key', publicKey.trim()] : []),
    '--idle-timeout',
    String(idleMinutes(config)),
  ]
}

/** `testbox run --id <tbx> --ssh-private-key <path> [--debug] <command>`: the command is one shell string. */
export function runArgs(config: Config, id: string, keyPath: string | undefined, command: string, debug: boolean): string[] {
  return [
    ...base(config),
    'testbox',
    'run',
    '--id',
    id,
    ...(keyPath ? ['--ssh-private-key', keyPath] : []),
    ...(debug || config.blacksmith.debug ? ['--debug'] : []),
    command,
  ]
}

export const stopArgs = (config: Config, id: string) => [...base(config), 'testbox', 'stop', '--id', id]

export const listArgs = (config: Config, all = false) => [...base(config), 'testbox', 'list', ...(all ? ['--all'] : [])]

export function statusArgs(config: Config, id: string, waitTimeoutSeconds?: number): string[] {
  const wait = waitTimeoutSeconds === undefined ? [] : ['--wait', '--wait-timeout', `${waitTimeoutSeconds}s`]
  return [...base(config), 'testbox', 'status', '--id', id, ...wait]
}

/** The rows of `testbox list`; the header and anything that is not a testbox row are skipped. */
export function parseTestboxList(output: string): TestboxRow[] {
  const rows: TestboxRow[] = []
  for (const line of output.split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields.length < 7 || fields[0] === 'ID' || !TESTBOX_ID.test(fields[0])) continue
    const [id, status, repo, workflow, job, ref, created] = fields
    rows.push({ id, status, repo, workflow, job, ref, created })
  }
  return rows
}

export const parseTestboxId = (output: string): string | undefined => TESTBOX_ID.exec(output)?.[0]

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/
const quote = (word: string) => (SAFE_WORD.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)

/**
 * The command as the one shell string `testbox run` takes: `--shell` (or a single word) is passed
 * as written; otherwise each word is quoted so the remote shell sees exactly these words.
 */
export function commandString(argv: string[], shell: boolean): string {
  if (shell || argv.length === 1) return argv.join(' ')
  return argv.map(quote).join(' ')
}
