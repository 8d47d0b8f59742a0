import { CrabboxError, failureText } from './errors.js'
import { color } from './ui/colors.js'
import { RescueError } from './ui/rescue.js'

/**
 * What a failed command prints and exits with, shared by `BaseCommand` (the oclif
 * commands) and the fast path (`src/fast-path.ts`), so both paths fail alike.
 */

/** Any error as a CrabboxError: ours as they are, anything else as `unexpected` (exit 1). */
export function asFailure(error: Error, debug: boolean): CrabboxError {
  if (error instanceof CrabboxError) return error
  return new CrabboxError(error.message, {
    exit: 'error',
    code: 'unexpected',
    hint: debug ? undefined : 'Rerun with --debug to see where it failed.',
    cause: error,
  })
}

/** `error: <message>` and the hint on stderr (not under --json, where the failure is the JSON). */
export function printFailure(failure: CrabboxError): void {
  if (failure instanceof RescueError) {
    for (const line of failure.lines) process.stderr.write(`${line.startsWith('problem:') ? color.red(line) : line}\n`)
    return
  }
  process.stderr.write(failureText(failure, color))
}

/** --debug: the stack of where the failure started, on stderr. */
export function printOrigin(failure: CrabboxError, error: Error): void {
  const origin = failure === error ? ((error.cause as Error | undefined) ?? error) : error
  process.stderr.write(`${color.dim(origin.stack ?? String(origin))}\n`)
}
