/** Exit codes shared by every command (ARCHITECTURE.md, "Output"). */
export const ExitCode = {
  ok: 0,
  error: 1,
  usage: 2,
  auth: 3,
  notFound: 4,
  provisioning: 5,
  sync: 6,
  ssh: 7,
  lostTransport: 255,
} as const

export type ExitCodeName = keyof typeof ExitCode

/**
 * The one error type commands let escape: it carries the process exit code and,
 * optionally, a hint that tells the user what to do next.
 */
export class CrabboxError extends Error {
  readonly exitCode: number
  readonly hint?: string
  readonly code: string

  constructor(message: string, options: { exit?: ExitCodeName | number; hint?: string; code?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'CrabboxError'
    this.exitCode = typeof options.exit === 'number' ? options.exit : ExitCode[options.exit ?? 'error']
    this.hint = options.hint
    this.code = options.code ?? (typeof options.exit === 'string' ? options.exit : 'error')
  }
}

/** `error: <message>` and the hint, as a failed command prints them; `paint` colours them for a terminal. */
export function failureText(
  failure: CrabboxError,
  paint: Record<'red' | 'dim', (text: string) => string> = { red: (t) => t, dim: (t) => t },
): string {
  return `${paint.red('error:')} ${failure.message}\n${failure.hint ? `${paint.dim(failure.hint)}\n` : ''}`
}

export const usageError = (message: string, hint?: string) => new CrabboxError(message, { exit: 'usage', hint })

/** A remote command finished with this exit code; `run` passes it through untouched. */
export class RemoteExit extends Error {
  constructor(readonly exitCode: number) {
    super(`remote command exited ${exitCode}`)
    this.name = 'RemoteExit'
  }
}
