import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stateDir } from '../../paths.js'

/**
 * The running egress bridge's files under `<state>/egress/`: `<lease ID>.json` (what `egress
 * start` says about itself, rewritten on every change, removed when it stops), `.pid` and
 * `.log` (the daemon).
 */
export interface EgressRecord {
  pid: number
  leaseId: string
  slug: string
  sessionID: string
  brokerUrl: string
  listen: string
  allow: string[]
  profile?: string
  hostConnected: boolean
  clientListening: boolean
  daemon: boolean
  startedAt: string
  updatedAt: string
}

export const egressDir = () => join(stateDir(), 'egress')
export const recordPath = (leaseId: string) => join(egressDir(), `${leaseId}.json`)
export const pidPath = (leaseId: string) => join(egressDir(), `${leaseId}.pid`)
export const logPath = (leaseId: string) => join(egressDir(), `${leaseId}.log`)

export function ensureDir(): void {
  mkdirSync(egressDir(), { recursive: true, mode: 0o700 })
}

export function writeRecord(record: EgressRecord): void {
  ensureDir()
  const path = recordPath(record.leaseId)
  writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 })
  renameSync(`${path}.tmp`, path)
}

export function readRecord(leaseId: string): EgressRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordPath(leaseId), 'utf8')) as EgressRecord
  } catch {
    return undefined
  }
}

export function readPid(leaseId: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidPath(leaseId), 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

export function removeFiles(leaseId: string): void {
  rmSync(recordPath(leaseId), { force: true })
  rmSync(pidPath(leaseId), { force: true })
}

/** Whether `pid` is a live crabbox egress process (checked through /proc where there is one). */
export function egressAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    if (/\) Z /.test(stat)) return false
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('egress')
  } catch {
    return true
  }
}
