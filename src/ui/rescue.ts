import { CrabboxError, type ExitCodeName } from '../errors.js'

/**
 * Rescue-first failure output: when a layer of a desktop session (X server,
 * window manager, VNC, browser, input tools, the WebVNC bridge or broker) hangs or
 * fails, the command names the layer and prints the exact commands that get the user
 * going again, within a bounded time. Plain text, so agents and scripts can grep it:
 *
 *   problem: vnc: nothing listens on 127.0.0.1:5900 on the runner
 *   rescue: crabbox desktop doctor --id blue-crab
 *   rescue: crabbox ssh --id blue-crab -- sudo systemctl restart crabbox-x11vnc
 */
export interface Rescue {
  /** The failing layer, e.g. `x-server`, `vnc`, `bridge`; absent when `problem` already starts with it. */
  layer?: string
  problem: string
  /** Exact commands, in the order to try them. */
  rescue: string[]
}

export const rescueLines = (step: Rescue): string[] => [
  `problem: ${step.layer ? `${step.layer}: ` : ''}${step.problem}`,
  ...step.rescue.map((command) => `rescue: ${command}`),
]

/** The `problem:` and `rescue:` lines, each ending in a newline. */
export const renderRescue = (step: Rescue): string =>
  rescueLines(step)
    .map((line) => `${line}\n`)
    .join('')

/** Quotes one shell word only when it needs it. */
const word = (value: string) => (/^[\w@%+=:,./~-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`)

/** The usual desktop rescue commands for a lease: reset the WebVNC bridge, the native VNC fallback, the doctor. */
export function desktopRescue(leaseId: string): string[] {
  const id = word(leaseId)
  return [`crabbox webvnc reset --id ${id}`, `crabbox vnc --id ${id}`, `crabbox desktop doctor --id ${id}`]
}

/** A failure printed as `problem:`/`rescue:` lines (src/failure.ts) instead of `error:` and a hint. */
export class RescueError extends CrabboxError {
  constructor(
    readonly steps: Rescue[],
    options: { exit?: ExitCodeName | number; code?: string; cause?: unknown } = {},
  ) {
    super(steps.map((step) => (step.layer ? `${step.layer}: ${step.problem}` : step.problem)).join('; '), {
      exit: options.exit ?? 'error',
      code: options.code ?? 'rescue',
      cause: options.cause,
    })
    this.name = 'RescueError'
  }

  get lines(): string[] {
    return this.steps.flatMap(rescueLines)
  }
}

/**
 * Runs `work` with a time limit: past it the work is aborted (through the
 * signal) and a RescueError names the layer that hung; a failure of the work
 * becomes one too, unless it already is one.
 */
export async function withRescue<T>(
  limitMs: number,
  rescue: (reason: 'timeout' | 'failed', error?: Error) => Rescue,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort(new Error('timed out'))
      reject(new RescueError([rescue('timeout')]))
    }, limitMs)
  })
  try {
    return await Promise.race([work(controller.signal), timeout])
  } catch (error) {
    if (error instanceof RescueError) throw error
    throw new RescueError([rescue('failed', error as Error)], { cause: error })
  } finally {
    clearTimeout(timer)
  }
}
