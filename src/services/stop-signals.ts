/** The exit code of a command stopped by a signal (128 + its number). */
export const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 }

/**
 * Calls `stop` on Ctrl-C, SIGTERM or SIGHUP and remembers which came, for the long-running
 * bridges (WebVNC, code, egress) that end cleanly and then exit with that signal's code.
 */
export function waitForSignal(stop: () => void): { stoppedBy: () => string | undefined; release: () => void } {
  let stoppedBy: string | undefined
  const onSignal = (signal: NodeJS.Signals) => {
    stoppedBy = signal
    stop()
  }
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  for (const signal of signals) process.on(signal, onSignal)
  return { stoppedBy: () => stoppedBy, release: () => signals.forEach((signal) => process.off(signal, onSignal)) }
}

/**
 * Holds until `bridge` ends or a signal stops it, then stops it and runs `cleanup` either way.
 * Returns the signal that stopped it (the caller turns that into its own exit), if one did.
 */
export async function runUntilStopped(
  bridge: { done: Promise<unknown>; stop(): Promise<void> },
  cleanup: () => Promise<void>,
): Promise<string | undefined> {
  const signals = waitForSignal(() => void bridge.stop())
  try {
    await bridge.done
  } finally {
    signals.release()
    await bridge.stop()
    await cleanup()
  }
  return signals.stoppedBy()
}
