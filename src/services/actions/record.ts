import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stateDir } from '../../paths.js'

/**
 * What this machine knows of a hydrated lease: the Actions workspace and the job's env
 * file, written by `actions hydrate` when the marker appeared and removed by `stop`.
 * `run` and `cache warm` read it (a local file: no round trip to the runner).
 */
export interface HydrationRecord {
  leaseId: string
  repo: string
  runnerName: string
  workspace: string
  envFile?: string
  runId?: string
  runUrl?: string
  readyAt?: string
}

/** Where `actions hydrate` keeps a lease's record (the agent lane stamps it: services/lane.ts). */
export const hydrationRecordPath = (leaseId: string) => join(stateDir(), 'actions', `${encodeURIComponent(leaseId)}.json`)

export function readHydration(leaseId: string): HydrationRecord | undefined {
  try {
    const record = JSON.parse(readFileSync(hydrationRecordPath(leaseId), 'utf8')) as HydrationRecord
    return typeof record.workspace === 'string' && record.workspace ? record : undefined
  } catch {
    return undefined
  }
}

export function writeHydration(record: HydrationRecord): void {
  mkdirSync(join(stateDir(), 'actions'), { recursive: true, mode: 0o700 })
  writeFileSync(hydrationRecordPath(record.leaseId), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 })
}

export function forgetHydration(leaseId: string): void {
  rmSync(hydrationRecordPath(leaseId), { force: true })
}
