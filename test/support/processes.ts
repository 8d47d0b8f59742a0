import { existsSync, readdirSync, readFileSync } from 'node:fs'

/**
 * This machine's process table, read from /proc: the one place tests look for processes
 * (runners, workerd, the commands they started). Processes that exit while it is read are skipped.
 */
export interface ProcessEntry {
  pid: number
  /** The command line as the kernel keeps it: arguments each ended by a NUL. */
  cmdline: string
  /** The arguments joined by spaces. */
  command: string
}

function entryOf(pid: number): ProcessEntry | undefined {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return { pid, cmdline, command: cmdline.replaceAll('\0', ' ').trim() }
  } catch {
    return undefined // exited meanwhile
  }
}

/** The command line of `pid` (arguments joined by spaces; empty for a zombie), or undefined once it is gone. */
export const commandOf = (pid: number): string | undefined => entryOf(pid)?.command

/** Every process of the machine, or those among `pids`. */
export function processTable(pids?: Iterable<number>): ProcessEntry[] {
  const found: ProcessEntry[] = []
  const all =
    pids ??
    readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number)
  for (const pid of all) {
    const entry = entryOf(pid)
    if (entry) found.push(entry)
  }
  return found
}

/** PIDs of processes whose command line contains `needle` (or matches it, for a RegExp). */
export function processesMatching(needle: string | RegExp | ((entry: ProcessEntry) => boolean)): number[] {
  const test =
    typeof needle === 'function'
      ? needle
      : typeof needle === 'string'
        ? (p: ProcessEntry) => p.command.includes(needle)
        : (p: ProcessEntry) => needle.test(p.command)
  return processTable()
    .filter(test)
    .map((p) => p.pid)
}

/** Whether `pid` exists (a zombie counts; another user's process counts too). */
export { pidAlive } from '../../src/pids.js'

/** Whether `pid` exists and is not a zombie waiting for its parent. */
export function pidRunning(pid: number): boolean {
  if (!existsSync(`/proc/${pid}`)) return false
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z')
  } catch {
    return false
  }
}

/** Resident memory of `pid` in MiB. */
export const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024
