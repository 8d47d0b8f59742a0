import { spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stateDir } from '../paths.js'
import { pidRuns } from '../pids.js'

/**
 * The files of a per-lease background process (the WebVNC bridge, egress) under
 * `<state>/<folder>/`: `<lease ID>.json` (what the process says about itself, rewritten by
 * rename on every change, removed when it stops), `<lease ID>.pid` and `<lease ID>.log` (the
 * daemon). A process that was killed leaves its `.json` behind with a dead pid: that is how
 * `status` knows it was killed.
 */
export interface DaemonFiles<R extends { leaseId: string; slug?: string; pid?: number }> {
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
  /**
   * Starts `crabbox <args>` detached (its own session, output appended to the lease's log) with
   * `env` added, records its pid and returns it. The full CLI: a daemon gains nothing from the fast path.
   */
  spawn(leaseId: string, args: string[], env: Record<string, string>): number
  /** Stops the lease's process (SIGTERM, SIGKILL after 5 s) and removes its files; true when one was running. */
  stop(leaseId: string): Promise<boolean>
}

export function daemonFiles<R extends { leaseId: string; slug?: string; pid?: number }>(folder: string, marker: string): DaemonFiles<R> {
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
  const readPid = (leaseId: string): number | undefined => {
    try {
      const pid = Number(readFileSync(pidPath(leaseId), 'utf8').trim())
      return Number.isInteger(pid) && pid > 0 ? pid : undefined
    } catch {
      return undefined
    }
  }
  const removeFiles = (leaseId: string, which: Array<'record' | 'pid'> = ['record', 'pid']) => {
    if (which.includes('record')) rmSync(recordPath(leaseId), { force: true })
    if (which.includes('pid')) rmSync(pidPath(leaseId), { force: true })
  }
  const logPath = (leaseId: string) => join(dir(), `${leaseId}.log`)
  const alive = (pid: number | undefined) => pid !== undefined && pidRuns(pid, marker)
  return {
    dir,
    recordPath,
    pidPath,
    logPath,
    ensureDir,
    writeRecord(record) {
      ensureDir()
      const path = recordPath(record.leaseId)
      writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 })
      renameSync(`${path}.tmp`, path)
    },
    readRecord,
    readPid,
    removeFiles,
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
    alive,
    spawn(leaseId, args, env) {
      ensureDir()
      const log = openSync(logPath(leaseId), 'a', 0o600)
      let pid: number
      try {
        const child = spawn(process.execPath, [process.argv[1]!, ...args], {
          detached: true,
          stdio: ['ignore', log, log],
          env: { ...process.env, ...env, CRABBOX_NO_FAST_PATH: '1' },
        })
        child.on('error', () => undefined)
        child.unref()
        pid = child.pid!
      } finally {
        closeSync(log)
      }
      writeFileSync(pidPath(leaseId), `${pid}\n`, { mode: 0o600 })
      return pid
    },
    async stop(leaseId) {
      const pid = readPid(leaseId) ?? readRecord(leaseId)?.pid
      const running = alive(pid)
      if (running) {
        process.kill(pid!, 'SIGTERM')
        const deadline = Date.now() + 5000
        while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
        if (alive(pid)) process.kill(pid!, 'SIGKILL')
      }
      removeFiles(leaseId)
      return running
    },
  }
}
