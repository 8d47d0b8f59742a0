import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as v from 'valibot'
import { stateDir } from '../../paths.js'

/** What the CLI hands the detached runner (`<leaseDir>/server.json`). */
export const LocalServerConfig = v.object({
  authorizedKey: v.string(),
  workRoot: v.string(),
  idleMs: v.number(),
  ttlMs: v.number(),
})

/** The local lease record (`<leaseDir>/lease.json`), written once the runner listens. */
export const LocalLeaseRecord = v.object({
  id: v.string(),
  slug: v.string(),
  pid: v.number(),
  port: v.number(),
  user: v.string(),
  keep: v.boolean(),
  workRoot: v.string(),
  privateKeyPath: v.string(),
  knownHostsPath: v.string(),
  idleTimeoutSeconds: v.number(),
  createdAt: v.string(),
  expiresAt: v.string(),
})
export type LocalLeaseRecord = v.InferOutput<typeof LocalLeaseRecord>

export const localRoot = (): string => join(stateDir(), 'local')
export const localLeaseDir = (leaseId: string): string => join(localRoot(), leaseId)

/** Reads and validates a JSON file; undefined when missing or malformed (a half-written lease). */
export function readLocalJson<S extends v.GenericSchema>(path: string, schema: S): v.InferOutput<S> | undefined {
  try {
    const parsed = v.safeParse(schema, JSON.parse(readFileSync(path, 'utf8')))
    return parsed.success ? parsed.output : undefined
  } catch {
    return undefined
  }
}
