import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stateDir } from '../paths.js'

/**
 * The files of a per-lease background process (the WebVNC bridge, egress) under
 * `<state>/<folder>/`: `<lease ID>.json` (what the process says about itself, rewritten by
 * rename on every change, removed when it stops), `<lease ID>.pid` and `<lease ID>.log` (the
 * daemon). A process that was killed leaves its `.json` behind with a dead pid: that is how
 * `status` knows it was killed.
 */
export interface DaemonFiles<R extends { leaseId: string; slug?: string }> {
  dir(): string
  recordPath(leaseId: string): string
  pidPath(leaseId: string): string
  logPath(leaseId: string): string
  ensureDir(): void
  writeRecord(record: R): void
  readRecord(leaseId: string): R | undefined
  readPid(leaseId: string): number | undefined
  removeFiles(leaseId: string, which?: Array<'record' | 'pid'>): void
  /** Lease IDs with a record or a pid file, matched by ID or slug when `idOrSlug` is given. */
  known(idOrSlug?: string): string[]
  /** Whether `pid` is a live process whose command line names `marker` (through /proc where there is one). */
  alive(pid: number | undefined): boolean
}

export function daemonFiles<R extends { leaseId: string; slug?: string }>(folder: string, marker: string): DaemonFiles<R> {
  const dir = () => join(stateDir(), folder)
  const recordPath = (leaseId: string) => join(dir(), `${leaseId}.json`)
  const pidPath = (leaseId: string) => join(dir(), `${leaseId}.pid`)
  const ensureDir = () => void mkdirSync(dir(), { recursive: true, mode: 0o700 })
  const readRecord = (leaseId: string): R | undefined => {
    try {
      return JSON.parse(readFileSync(recordPath(leaseId), 'utf8')) as R
    } catch {
      return undefined
    }
  }
  return {
    dir,
    recordPath,
    pidPath,
    logPath: (leaseId) => join(dir(), `${leaseId}.log`),
    ensureDir,
    writeRecord(record) {
      ensureDir()
      const path = recordPath(record.leaseId)
      writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 })
      renameSync(`${path}.tmp`, path)
    },
    readRecord,
    readPid(leaseId) {
      try {
        const pid = Number(readFileSync(pidPath(leaseId), 'utf8').trim())
        return Number.isInteger(pid) && pid > 0 ? pid : undefined
      } catch {
        return undefined
      }
    },
    removeFiles(leaseId, which = ['record', 'pid']) {
      if (which.includes('record')) rmSync(recordPath(leaseId), { force: true })
      if (which.includes('pid')) rmSync(pidPath(leaseId), { force: true })
    },
    known(idOrSlug) {
      if (!existsSync(dir())) return []
      const ids = new Set<string>()
      for (const name of readdirSync(dir())) {
        const match = /^(.+)\.(json|pid)$/.exec(name)
        if (match) ids.add(match[1]!)
      }
      if (!idOrSlug) return [...ids].sort()
      return [...ids].filter((id) => id === idOrSlug || readRecord(id)?.slug === idOrSlug)
    },
    alive(pid) {
      if (pid === undefined) return false
      try {
        process.kill(pid, 0)
      } catch (error) {
        return (error as NodeJS.ErrnoException).code === 'EPERM'
      }
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
        if (/\) Z /.test(stat)) return false
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)
      } catch {
        return true // no /proc (macOS): trust kill(0)
      }
    },
  }
}
