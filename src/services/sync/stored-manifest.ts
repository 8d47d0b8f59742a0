import { randomBytes } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cacheDir } from './hash-cache.js'
import type { Manifest, ManifestEntry } from './manifest.js'
import type { GitView } from './snapshot.js'

/**
 * The manifest of the last full pass, kept beside its snapshot (state dir,
 * `manifest.json`) so a small change can be applied to it instead of
 * listing and `lstat`ing the whole checkout again (manifest-delta.ts).
 * Entries carry their file stamps (size, mtime, ctime, inode); the hash cache
 * maps those stamps to content hashes.
 */
export interface StoredManifest {
  id: string
  entries: ManifestEntry[]
  tracked: string[]
  deleted: string[]
  rejected: Manifest['rejected']
  /** git's listings at that pass (raw, NUL-separated) and the flagged index entries. */
  changed: string
  untracked: string
  flagged: string[]
}

type Row = [path: string, mode: ManifestEntry['mode'], size: number, mtimeMs: number, ctimeMs: number, ino: number, target: string | null]

const storedPath = (root: string) => join(cacheDir(root), 'manifest.json')

/** Writes the manifest; returns its id (recorded in the snapshot, so the two are known to belong together). */
export async function storeManifest(manifest: Manifest, view: Pick<GitView, 'changed' | 'untracked' | 'flagged'>): Promise<string> {
  const id = randomBytes(8).toString('hex')
  const rows: Row[] = manifest.entries.map((e) => [e.path, e.mode, e.size, e.mtimeMs, e.ctimeMs, e.ino, e.target ?? null])
  const file = storedPath(manifest.root)
  const tmp = `${file}.${process.pid}.tmp`
  const body = {
    v: 1,
    id,
    rows,
    tracked: [...(manifest.git?.tracked ?? [])],
    deleted: manifest.deleted,
    rejected: manifest.rejected,
    changed: view.changed,
    untracked: view.untracked,
    flagged: view.flagged,
  }
  await writeFile(tmp, JSON.stringify(body))
  await rename(tmp, file)
  return id
}

/** The stored manifest with this id, or undefined (missing, another pass's, unreadable). */
export async function readStoredManifest(root: string, id: string | undefined): Promise<StoredManifest | undefined> {
  if (!id) return undefined
  try {
    const body = JSON.parse(await readFile(storedPath(root), 'utf8')) as Omit<StoredManifest, 'entries'> & { v: number; rows: Row[] }
    if (body.v !== 1 || body.id !== id) return undefined
    const entries = body.rows.map(([path, mode, size, mtimeMs, ctimeMs, ino, target]): ManifestEntry => {
      const entry: ManifestEntry = { path, mode, size, mtimeMs, ctimeMs, ino }
      if (target !== null) entry.target = target
      return entry
    })
    return { ...body, entries }
  } catch {
    return undefined
  }
}
