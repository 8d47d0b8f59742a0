/**
 * Rescue-first failure output: the failing layer on a `problem:` line, then the exact
 * commands that get the user going again, one per `rescue:` line. Plain text, so agents
 * and scripts can grep it; printed on stderr by the callers.
 */
export interface Rescue {
  /** The failing layer and what went wrong, e.g. `broker: cannot reach https://…`. */
  problem: string
  /** Whole command lines, most useful first. */
  rescue: string[]
}

/** The `problem:` and `rescue:` lines, each ending in a newline. */
export function renderRescue({ problem, rescue }: Rescue): string {
  return [`problem: ${problem}`, ...rescue.map((command) => `rescue: ${command}`)].map((line) => `${line}\n`).join('')
}

/** Quotes one shell word only when it needs it. */
const word = (value: string) => (/^[\w@%+=:,./~-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`)

/** The usual desktop rescue commands for a lease: reset the WebVNC bridge, the native VNC fallback, the doctor. */
export function desktopRescue(leaseId: string): string[] {
  const id = word(leaseId)
  return [`crabbox webvnc reset --id ${id}`, `crabbox vnc --id ${id}`, `crabbox desktop doctor --id ${id}`]
}
