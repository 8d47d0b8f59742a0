import type { Config } from '../../config/schema.js'
import { buildManifest, findRepoRoot, type Manifest } from './manifest.js'

export interface SyncPlanSummary {
  root: string
  git: boolean
  files: number
  bytes: number
  deletedTracked: number
  deleted: string[]
  rejected: { path: string; reason: string }[]
  largestFiles: { path: string; bytes: number }[]
  largestDirs: { path: string; files: number; bytes: number }[]
}

/** Folder bucket for sync-plan: the first two path segments (`packages/app`), or `.` for root files. */
export function bucketOf(path: string): string {
  const parts = path.split('/')
  if (parts.length === 1) return '.'
  return parts.slice(0, Math.min(2, parts.length - 1)).join('/')
}

/** What sync-plan shows: totals, local deletions, and where the bytes are. */
export function summarizeManifest(manifest: Manifest, limit: number): SyncPlanSummary {
  const largestFiles = [...manifest.entries]
    .sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1))
    .slice(0, limit)
    .map((entry) => ({ path: entry.path, bytes: entry.size }))
  const dirs = new Map<string, { files: number; bytes: number }>()
  for (const entry of manifest.entries) {
    const key = bucketOf(entry.path)
    const dir = dirs.get(key) ?? { files: 0, bytes: 0 }
    dir.files++
    dir.bytes += entry.size
    dirs.set(key, dir)
  }
  const largestDirs = [...dirs]
    .map(([path, dir]) => ({ path, ...dir }))
    .sort((a, b) => b.bytes - a.bytes || b.files - a.files || (a.path < b.path ? -1 : 1))
    .slice(0, limit)
  return {
    root: manifest.root,
    git: Boolean(manifest.git),
    files: manifest.files,
    bytes: manifest.bytes,
    deletedTracked: manifest.deleted.length,
    deleted: manifest.deleted.slice(0, limit),
    rejected: manifest.rejected,
    largestFiles,
    largestDirs,
  }
}

/** `crabbox sync-plan`: the manifest `run` would sync from `cwd`, without leasing anything. */
export async function syncPlan(cwd: string, config: Config['sync'], limit: number): Promise<SyncPlanSummary> {
  const root = await findRepoRoot(cwd)
  return summarizeManifest(await buildManifest(root, config), limit)
}
