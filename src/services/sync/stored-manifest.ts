import { randomBytes } from 'node:crypto'
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RACY_MS, cacheDir } from './hash-cache.js'
import type { Manifest, ManifestEntry } from './manifest.js'
import type { GitView } from './snapshot.js'
import { readParsed, type WarmFile } from './warm-files.js'

/**
 * The manifest of the last full pass, kept beside its snapshot (state dir,
 * `manifest.json`) so a small change can be applied to it instead of
 * listing and `lstat`ing the whole checkout again (manifest-delta.ts).
 * Entries carry their file stamps (size, mtime, ctime, inode) and the content
 * hash taken for those stamps, so a small change needs neither the hash cache
 * nor any file but the ones it looks at again.
 */
export interface StoredManifest {
  id: string
  entries: ManifestEntry[]
  /** Content hash per entry (same order); undefined where none was known or the file was racy. */
  hashes: (string | undefined)[]
  tracked: string[]
  deleted: string[]
  rejected: Manifest['rejected']
  /** git's listings at that pass (raw, NUL-separated) and the flagged index entries. */
  changed: string
  untracked: string
  flagged: string[]
}

type Row = [
  path: string,
  mode: ManifestEntry['mode'],
  size: number,
  mtimeMs: number,
  ctimeMs: number,
  ino: number,
  target: string | null,
  hash: string | null,
]

const storedPath = (root: string) => join(cacheDir(root), 'manifest.json')

/**
 * Writes the manifest with each entry's hash (none for a file modified within
 * the racy window, as in the hash cache); returns its id (recorded in the
 * snapshot, so the two are known to belong together).
 */
export async function storeManifest(
  manifest: Manifest,
  view: Pick<GitView, 'changed' | 'untracked' | 'flagged'>,
  hashes?: (string | undefined)[],
): Promise<string> {
  const id = randomBytes(8).toString('hex')
  const now = Date.now()
  const rows: Row[] = manifest.entries.map((e, i) => [
    e.path,
    e.mode,
    e.size,
    e.mtimeMs,
    e.ctimeMs,
    e.ino,
    e.target ?? null,
    (now - e.mtimeMs >= RACY_MS && hashes?.[i]) || null,
  ])
  const file = storedPath(manifest.root)
  const tmp = `${file}.${process.pid}.tmp`
  const body = {
    v: 2,
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
    const stored = await readParsed(storedPath(root), parseStoredManifest)
    return stored?.id === id ? stored : undefined
  } catch {
    return undefined
  }
}

/** The file's stored manifest, whatever its id; undefined for another format. */
function parseStoredManifest(data: Buffer): StoredManifest | undefined {
  const { v, rows, ...body } = JSON.parse(data.toString('utf8')) as Omit<StoredManifest, 'entries' | 'hashes'> & { v: number; rows: Row[] }
  if (v !== 2) return undefined
  const hashes: (string | undefined)[] = new Array(rows.length)
  const entries = rows.map(([path, mode, size, mtimeMs, ctimeMs, ino, target, hash], i): ManifestEntry => {
    const entry: ManifestEntry = { path, mode, size, mtimeMs, ctimeMs, ino }
    if (target !== null) entry.target = target
    if (hash !== null) hashes[i] = hash
    return entry
  })
  return { ...body, entries, hashes }
}

/** For a spare worker to read ahead (warm-files.ts); callers only read what it returns. */
export const storedManifestFile: WarmFile = {
  folder: cacheDir,
  path: (root) => Promise.resolve(storedPath(root)),
  parse: parseStoredManifest,
}
