import { createHash } from 'node:crypto'
import { join } from 'node:path'
import type { Config } from '../../config/schema.js'
import { excludesKey, hashFile, hashLink } from './hash-cache.js'
import { MODE_LINK, type Manifest } from './manifest.js'

export interface HashedManifest {
  /** Content hash per manifest entry, same order as `manifest.entries`. */
  hashes: string[]
  /** Files actually read (cache misses). */
  hashedFiles: number
  hashedBytes: number
}

/**
 * Content hashes for every entry. Warm, this is one lstat per file (already
 * done by the manifest) and a map lookup; `checksum` ignores the cache.
 */
export async function hashManifest(manifest: Manifest, options: { checksum?: boolean; save?: boolean } = {}): Promise<HashedManifest> {
  const cache = manifest.cache
  const hashes: string[] = new Array(manifest.entries.length)
  let hashedFiles = 0
  let hashedBytes = 0
  for (let i = 0; i < manifest.entries.length; i++) {
    const entry = manifest.entries[i]
    if (entry.mode === MODE_LINK) {
      hashes[i] = hashLink(entry.target ?? '')
      continue
    }
    let hash = options.checksum ? undefined : (manifest.known?.[i] ?? cache.get(entry))
    if (hash === undefined) {
      hash = hashFile(join(manifest.root, entry.path))
      hashedFiles++
      hashedBytes += entry.size
    }
    hashes[i] = hash
  }
  // The sync saves later (remember step), off the path to its first byte sent.
  if (options.save !== false) await saveHashes(manifest, hashes)
  return { hashes, hashedFiles, hashedBytes }
}

/**
 * Records every entry's hash in the cache (hashes computed here or while
 * streaming) and saves it. Not for an incremental manifest: its hashes are
 * kept in the stored manifest that the snapshot writes (stored-manifest.ts).
 */
export async function saveHashes(manifest: Manifest, hashes: string[]): Promise<void> {
  if (manifest.incremental) return
  const cache = manifest.cache
  const now = Date.now()
  manifest.entries.forEach((entry, i) => {
    if (entry.mode !== MODE_LINK && hashes[i] !== undefined) cache.set(entry, hashes[i], now)
  })
  cache.retain(new Set(manifest.entries.map((entry) => entry.path)))
  cache.setExcludes(excludesKey(manifest.excludes))
  await cache.save()
}

/**
 * One SHA-256 over everything that decides what the runner should hold: git
 * HEAD and base, the sync settings, every path with its mode and content hash.
 * Equal fingerprints mean there is nothing to do.
 */
export function computeFingerprint(manifest: Manifest, hashed: HashedManifest, config: Config['sync']): string {
  const hash = createHash('sha256')
  const git = manifest.git
  hash.update(
    `crabbox-sync v1\0${git ? 'git' : 'dir'}\0${git?.head ?? ''}\0${git?.branch ?? ''}\0${git?.baseRef ?? ''}\0${git?.baseSha ?? ''}\0`,
  )
  hash.update(`delete=${config.delete}\0gitSeed=${config.gitSeed}\0`)
  for (const pattern of manifest.excludes) hash.update(`x ${pattern}\0`)
  // The same bytes as one update per entry, in a few large updates (each update is a call into C++).
  const lines: string[] = []
  const flush = () => (hash.update(lines.join('')), (lines.length = 0))
  for (let i = 0; i < manifest.entries.length; i++) {
    const entry = manifest.entries[i]
    lines.push(`${hashed.hashes[i]} ${entry.mode.toString(8)} ${entry.path}\0`)
    if (lines.length === 4096) flush()
  }
  flush()
  for (const path of manifest.deleted) hash.update(`d ${path}\0`)
  return hash.digest('hex')
}
