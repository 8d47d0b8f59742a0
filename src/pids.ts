import { readFileSync } from 'node:fs'

/** Whether a process with `pid` exists (one of another user's counts: the signal check says so with EPERM). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Whether `pid` still runs the program whose command line holds `marker`: a pid the system has
 * since given to another program, or a zombie, does not count. Without /proc (macOS) the signal
 * check alone decides.
 */
export function pidRuns(pid: number, marker: string): boolean {
  if (!pidAlive(pid)) return false
  try {
    if (/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return false
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)
  } catch {
    return true
  }
}
