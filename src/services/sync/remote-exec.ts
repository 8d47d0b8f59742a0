import { CrabboxError } from '../../errors.js'
import type { ExecOptions, ExecResult, SshSession } from '../../transport/ssh/types.js'
import { SCRIPT_EXIT } from './remote-scripts.js'

/**
 * Runs one of the sync's scripts on the runner and returns its stdout; `onLine`
 * also sees each complete stdout line as it arrives. A non-zero exit is a sync
 * failure that names what failed, with the runner's stderr.
 */
export async function runRemote(
  session: SshSession,
  command: string,
  options: { stdin?: ExecOptions['stdin']; signal?: AbortSignal; onLine?: (line: string) => void; what: string },
): Promise<Buffer> {
  const stdout: Buffer[] = []
  let stderr = ''
  let partial = ''
  const result = await session.exec(command, {
    stdin: options.stdin,
    signal: options.signal,
    onStdout: (chunk) => {
      stdout.push(chunk)
      if (!options.onLine) return
      partial += chunk.toString('utf8')
      let nl: number
      while ((nl = partial.indexOf('\n')) !== -1) {
        options.onLine(partial.slice(0, nl))
        partial = partial.slice(nl + 1)
      }
    },
    onStderr: (chunk) => (stderr = (stderr + chunk.toString('utf8')).slice(-4000)),
  })
  if (options.signal?.aborted) throw syncTimeout(options.signal)
  if (result.code !== 0) throw remoteFailure(result, stderr, options.what)
  return Buffer.concat(stdout)
}

/** A sync script's non-zero exit, as the error that names what failed (its stderr's tail as the detail). */
export function remoteFailure(result: ExecResult, stderr: string, what: string): CrabboxError {
  const detail = stderr.trim() || (result.code === null ? `killed by ${result.signal}` : `exit ${result.code}`)
  const exit =
    result.code === SCRIPT_EXIT.workdir
      ? 'the workdir could not be created'
      : result.code === SCRIPT_EXIT.tar
        ? 'extracting files failed'
        : result.code === SCRIPT_EXIT.pack
          ? "reading HEAD's files as git objects failed"
          : `${what} failed`
  return new CrabboxError(`sync: ${exit} on the runner: ${detail}`, {
    exit: 'sync',
    code: 'sync_failed',
    hint:
      result.code === SCRIPT_EXIT.workdir
        ? 'The runner user cannot write under the work root: choose a folder it can write with --work-root or workRoot (CRABBOX_WORK_ROOT; static.workRoot for the ssh provider).'
        : 'Run again; an interrupted sync repairs itself. If it keeps failing, check disk space and permissions on the runner.',
  })
}

export const syncTimeout = (signal: AbortSignal) =>
  new CrabboxError('sync timed out', {
    exit: 'sync',
    code: 'sync_timeout',
    hint: 'Raise sync.timeout, or shrink the sync (see `crabbox sync-plan`).',
    cause: signal.reason,
  })
