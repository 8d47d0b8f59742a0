import { createHash } from 'node:crypto'
import { closeSync, openSync, readSync } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stateDir } from '../../paths.js'
import type { ManifestEntry } from './manifest.js'

/**
 * Content hashes keyed by path, size, mtime, ctime, inode and mode, so re-hashing a
 * large repo only reads files that changed since the last sync. Lives under
 * the state dir, one folder per repo root.
 */
type Row = [size: number, mtimeMs: number, ctimeMs: number, ino: number, mode: number, hash: string]

/** A file changed this recently may change again within the same mtime tick: never trust it from cache. */
export const RACY_MS = 2000

export function cacheDir(repoRoot: string): string {
  return join(stateDir(), 'sync', createHash('sha256').update(repoRoot).digest('hex').slice(0, 16))
}

/** Identifies an exclude list, so cached include decisions are only reused under the same rules. */
export const excludesKey = (patterns: string[]) => createHash('sha256').update(patterns.join('\0')).digest('hex').slice(0, 32)

const chunk = Buffer.allocUnsafe(1024 * 1024)

/** SHA-256 of a file's bytes, read in 1 MiB chunks (no big allocations for big files). */
export function hashFile(path: string): string {
  const hash = createHash('sha256')
  const fd = openSync(path, 'r')
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null)
      if (n === 0) break
      hash.update(n === chunk.length ? chunk : chunk.subarray(0, n))
    }
  } finally {
    closeSync(fd)
  }
  return hash.digest('hex')
}

export const hashLink = (target: string) => createHash('sha256').update(target).digest('hex')

// ctime too: an in-place edit that keeps the size and restores the mtime still moves it.
const sameFile = (row: Row, entry: ManifestEntry) =>
  row[0] === entry.size && row[1] === entry.mtimeMs && row[2] === entry.ctimeMs && row[3] === entry.ino && row[4] === entry.mode

export class HashCache {
  private dirty = false
  private constructor(
    private readonly file: string,
    private readonly rows: Map<string, Row>,
    private excludesKey: string,
  ) {}

  static async load(repoRoot: string): Promise<HashCache> {
    const file = join(cacheDir(repoRoot), 'hashes.json')
    let rows = new Map<string, Row>()
    let excludesKey = ''
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as { v: number; excludes?: string; rows: Record<string, Row> }
      if (parsed.v === 2) {
        rows = new Map(Object.entries(parsed.rows))
        excludesKey = parsed.excludes ?? ''
      }
    } catch {
      // Missing or corrupt: start cold.
    }
    return new HashCache(file, rows, excludesKey)
  }

  /**
   * A cache seeded from the stored manifest's hashes (stored-manifest.ts)
   * instead of the file: an incremental manifest needs nothing else. Keyed
   * by the same stamps, so an entry looked at again misses and is hashed.
   */
  static fromEntries(repoRoot: string, entries: ManifestEntry[], hashes: (string | undefined)[], excludes: string): HashCache {
    const rows = new Map<string, Row>()
    entries.forEach((entry, i) => {
      const hash = hashes[i]
      if (hash !== undefined) rows.set(entry.path, [entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino, entry.mode, hash])
    })
    return new HashCache(join(cacheDir(repoRoot), 'hashes.json'), rows, excludes)
  }

  /**
   * True when `path` was in the last manifest built with these same excludes,
   * so matching it against the excludes again can be skipped.
   */
  includedBefore(path: string, excludesKey: string): boolean {
    return excludesKey === this.excludesKey && this.rows.has(path)
  }

  /** The excludes the current rows were selected with. */
  setExcludes(excludesKey: string): void {
    if (excludesKey === this.excludesKey) return
    this.excludesKey = excludesKey
    this.dirty = true
  }

  get(entry: ManifestEntry): string | undefined {
    const row = this.rows.get(entry.path)
    if (!row) return undefined
    return sameFile(row, entry) ? row[5] : undefined
  }

  set(entry: ManifestEntry, hash: string, now = Date.now()): void {
    if (now - entry.mtimeMs < RACY_MS) {
      if (this.rows.delete(entry.path)) this.dirty = true
      return
    }
    const row = this.rows.get(entry.path)
    if (row && sameFile(row, entry) && row[5] === hash) return
    this.rows.set(entry.path, [entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino, entry.mode, hash])
    this.dirty = true
  }

  /** Drops rows for paths no longer in the manifest, so the cache does not grow forever. */
  retain(paths: Set<string>): void {
    for (const path of this.rows.keys()) {
      if (!paths.has(path)) {
        this.rows.delete(path)
        this.dirty = true
      }
    }
  }

  async save(): Promise<void> {
    if (!this.dirty) return
    await mkdir(join(this.file, '..'), { recursive: true })
    const tmp = `${this.file}.${process.pid}.tmp`
    await writeFile(tmp, JSON.stringify({ v: 2, excludes: this.excludesKey, rows: Object.fromEntries(this.rows) }))
    await rename(tmp, this.file)
    this.dirty = false
  }
}
