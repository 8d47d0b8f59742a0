import { execFile, spawn } from 'node:child_process'
import type { Manifest } from './manifest.js'
import { MODE_EXEC, MODE_LINK } from './modes.js'
import { META_FILES } from './remote-scripts.js'

/*
 * The shallow git seed, built on the runner from the files it already holds.
 * A first sync used to send HEAD's whole history as a bundle after the files,
 * so every file travelled twice. Instead the runner hashes the synced files
 * that equal HEAD's blobs into its own object store (one pack, in C), writes
 * the trees itself and gets only what it cannot make from its files: HEAD's
 * commit object (byte for byte, so its hash is ours), and the blobs of paths
 * whose synced content is not HEAD's (dirty, excluded, deleted). The runner
 * checks that the tree it wrote is HEAD's tree before it points HEAD there;
 * anything else falls back to the bundle. A commit with parents is marked
 * shallow: older history arrives only when asked (`git fetch --deepen`).
 */

export interface SeedFiles {
  /** Files for the runner's metadata dir, carried at the end of the tar stream. */
  files: { path: string; data: Buffer }[]
  /** Paths of HEAD whose synced content is HEAD's blob (hashed on the runner). */
  fromFiles: number
  /** Blobs that travel in the pack instead. */
  packed: number
}

/** The runner hashes the files in this many processes at once, each with its share of the bytes. */
export const SEED_PARTS = 4

const partNames = Array.from({ length: SEED_PARTS }, (_, i) => `${META_FILES.seedPaths}.${i}`)

/** The seed files' paths under the metadata dir, known before they are built (tar parent entries). */
export const seedPaths = (meta: string) =>
  [META_FILES.seedPack, META_FILES.seedInfo, ...partNames, META_FILES.seedCheck].map((name) => `${meta}/${name}`)

function gitOut(root: string, args: string[], input?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile('git', ['-C', root, ...args], { encoding: 'buffer', maxBuffer: 1024 * 1024 * 1024 }, (error, stdout) =>
      error ? reject(error) : resolve(stdout),
    )
    if (input !== undefined) child.stdin?.end(input)
  })
}

/** `git pack-objects --stdout` of exactly these objects (no traversal). */
function packObjects(root: string, ids: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['-C', root, 'pack-objects', '--stdout', '-q'], { stdio: ['pipe', 'pipe', 'ignore'] })
    const chunks: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`git pack-objects exited ${code}`))))
    child.stdin.end(ids.map((id) => `${id}\n`).join(''))
  })
}

/** Exactly `parts` runs of paths (some may be empty) with about equal bytes each. */
function splitByBytes(paths: { path: string; size: number }[], parts: number): string[][] {
  const total = paths.reduce((n, p) => n + p.size + 1, 0)
  const out: string[][] = Array.from({ length: parts }, () => [])
  let bytes = 0
  for (const { path, size } of paths) {
    out[Math.min(parts - 1, Math.floor((bytes * parts) / Math.max(total, 1)))].push(path)
    bytes += size + 1
  }
  return out
}

const split0 = (data: Buffer) => data.toString('utf8').split('\0').filter(Boolean)

/**
 * Builds the seed for HEAD: `seed.pack` (HEAD's commit and the blobs the
 * runner cannot take from its files), `seed.info` (those index entries, for
 * `git update-index -z --index-info`), `seed.paths` (paths to hash from the
 * runner's files) and `seed.check` (HEAD's tree, then the shallow line).
 */
export async function buildSeed(root: string, manifest: Manifest, meta: string): Promise<SeedFiles> {
  const head = manifest.git?.head
  if (!head) throw new Error('no HEAD')
  const [listing, dirty, commit] = await Promise.all([
    gitOut(root, ['ls-tree', '-r', '-z', '--full-tree', head]),
    // Paths whose worktree content may differ from HEAD (staged, unstaged, deleted; stat-only changes too).
    gitOut(root, ['diff-index', '--name-only', '-z', head]),
    gitOut(root, ['cat-file', 'commit', head]),
  ])
  const changed = new Set(split0(dirty))
  const synced = new Map(manifest.entries.map((entry) => [entry.path, entry]))
  const paths: { path: string; size: number }[] = []
  const info: string[] = []
  const packed = new Set<string>([head])
  for (const row of split0(listing)) {
    const tab = row.indexOf('\t')
    const [mode, type, id] = row.slice(0, tab).split(' ')
    const path = row.slice(tab + 1)
    const entry = synced.get(path)
    const same =
      type === 'blob' &&
      entry !== undefined &&
      !changed.has(path) &&
      (mode === '120000' ? entry.mode === MODE_LINK : entry.mode !== MODE_LINK && (mode === '100755') === (entry.mode === MODE_EXEC))
    if (same) {
      paths.push({ path, size: entry.size })
      continue
    }
    info.push(`${mode} ${id}\t${path}`)
    if (type === 'blob') packed.add(id)
  }
  const text = commit.toString('latin1')
  const tree = /^tree ([0-9a-f]+)$/m.exec(text)?.[1]
  if (!tree) throw new Error('HEAD has no tree')
  const shallow = /^parent [0-9a-f]+$/m.test(text.slice(0, text.indexOf('\n\n')))
  const pack = await packObjects(root, [...packed])
  const zeroTerminated = (rows: string[]) => Buffer.from(rows.map((row) => `${row}\0`).join(''))
  return {
    files: [
      { path: `${meta}/${META_FILES.seedPack}`, data: pack },
      { path: `${meta}/${META_FILES.seedInfo}`, data: zeroTerminated(info) },
      ...splitByBytes(paths, SEED_PARTS).map((part, i) => ({ path: `${meta}/${partNames[i]}`, data: zeroTerminated(part) })),
      { path: `${meta}/${META_FILES.seedCheck}`, data: Buffer.from(`${tree}\n${shallow ? head : ''}\n`) },
    ],
    fromFiles: paths.length,
    packed: packed.size - 1,
  }
}
