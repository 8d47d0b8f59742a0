import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stateDir } from '../../paths.js'

/**
 * What a running bridge says about itself, and the daemon's files, under
 * `<state>/webvnc/`: `<lease ID>.json` (written by the bridge on every change, removed when
 * it stops), `<lease ID>.pid` and `<lease ID>.log` (the daemon). A bridge that was killed
 * leaves its `.json` behind with a dead pid: that is how `status` knows it was killed.
 */
export interface BridgeRecord {
  pid: number
  leaseId: string
  slug: string
  brokerUrl: string
  portalUrl: string
  slots: number
  connected: number
  relaying: number
  localPort?: number
  lastProblem?: string
  daemon: boolean
  startedAt: string
  updatedAt: string
}

export const webvncDir = () => join(stateDir(), 'webvnc')
export const recordPath = (leaseId: string) => join(webvncDir(), `${leaseId}.json`)
export const pidPath = (leaseId: string) => join(webvncDir(), `${leaseId}.pid`)
export const logPath = (leaseId: string) => join(webvncDir(), `${leaseId}.log`)

export function ensureDir(): void {
  mkdirSync(webvncDir(), { recursive: true, mode: 0o700 })
}

export function writeRecord(record: BridgeRecord): void {
  ensureDir()
  const path = recordPath(record.leaseId)
  writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 })
  renameSync(`${path}.tmp`, path)
}

export function readRecord(leaseId: string): BridgeRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordPath(leaseId), 'utf8')) as BridgeRecord
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

export function removeFiles(leaseId: string, which: Array<'record' | 'pid'> = ['record', 'pid']): void {
  if (which.includes('record')) rmSync(recordPath(leaseId), { force: true })
  if (which.includes('pid')) rmSync(pidPath(leaseId), { force: true })
}

/** Lease IDs with a record or a pid file, matched by ID or slug when `idOrSlug` is given. */
export function knownBridges(idOrSlug?: string): string[] {
  if (!existsSync(webvncDir())) return []
  const ids = new Set<string>()
  for (const name of readdirSync(webvncDir())) {
    const match = /^(.+)\.(json|pid)$/.exec(name)
    if (match) ids.add(match[1]!)
  }
  if (!idOrSlug) return [...ids].sort()
  return [...ids].filter((id) => id === idOrSlug || readRecord(id)?.slug === idOrSlug)
}

/** Whether `pid` is a live process that is a crabbox WebVNC bridge (checked through /proc where there is one). */
export function bridgeAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    if (/\) Z /.test(stat)) return false
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('webvnc')
  } catch {
    return true // no /proc (macOS): trust kill(0)
  }
}
