import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, type Readable } from 'node:stream'
import { deflateRawSync } from 'node:zlib'
import { hashLink } from './hash-cache.js'
import type { Manifest, ManifestEntry } from './manifest.js'
import { MODE_EXEC, MODE_LINK } from './modes.js'
import { META_FILES } from './remote-scripts.js'

/*
 * The cold sync's git seed as git objects. A runner that holds nothing gets
 * HEAD's clean files (those whose content is HEAD's blob) not as tar entries
 * but as one pack of HEAD's commit, trees and blobs, built here by
 * `git pack-objects` (which reuses the compressed objects of the local packs)
 * and streamed on its own channel into the runner's `git index-pack`. The
 * runner then writes those files with `git checkout-index`, which also leaves
 * an index with their stat data, so the files, the objects and a clean
 * `git status` cost one pass instead of tar, then hashing every file again.
 * Dirty, untracked and excluded files still travel in the tar. The commit is
 * shallow when it has parents: older history arrives only when asked.
 */

export interface SeedPack {
  /** Indices into the manifest's entries of the files the pack carries instead of the tar. */
  clean: Set<number>
  /** HEAD's blob id per clean entry index (checked against the bytes hashed here). */
  blobs: Map<number, string>
  /** The metadata files at the end of the tar: `seed.check` and `seed.paths` (the paths to check out). */
  files: { path: string; data: Buffer }[]
  /** The pack's object ids: the commit, every tree and blob of HEAD. */
  objects: string[]
  /** Stored (level 0) objects when a sample of the files does not compress: deflating them would cost CPU for nothing. */
  store: boolean
}

const split0 = (data: Buffer) => data.toString('utf8').split('\0').filter(Boolean)

function gitOut(root: string, args: string[], input?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile('git', ['-C', root, ...args], { encoding: 'buffer', maxBuffer: 1024 * 1024 * 1024 }, (error, stdout) =>
      error ? reject(error) : resolve(stdout),
    )
    if (input !== undefined) child.stdin?.end(input)
  })
}

/** Whether git attributes may make a file's bytes differ from its blob (filters, eol): then ask git per path. */
async function attributesMayApply(root: string, listing: string[]): Promise<boolean> {
  if (listing.some((row) => row.endsWith('\t.gitattributes') || row.endsWith('/.gitattributes'))) return true
  const gitDir = (await gitOut(root, ['rev-parse', '--absolute-git-dir'])).toString('utf8').trim()
  if (existsSync(join(gitDir, 'info', 'attributes'))) return true
  const config = await gitOut(root, ['config', '--get-regexp', '^core\\.attributesfile$']).catch(() => Buffer.alloc(0))
  if (config.length > 0) return true
  const xdg = process.env.XDG_CONFIG_HOME || join(homedir(), '.config')
  return existsSync(join(xdg, 'git', 'attributes'))
}

/** Paths whose checkout git would convert (a filter, eol, ident or an encoding): they travel in the tar. */
async function convertedPaths(root: string, paths: string[]): Promise<Set<string>> {
  const out = split0(
    await gitOut(root, ['check-attr', '-z', '--stdin', 'filter', 'eol', 'ident', 'working-tree-encoding'], paths.join('\0')),
  )
  const converted = new Set<string>()
  for (let i = 0; i + 2 < out.length; i += 3) if (out[i + 2] !== 'unspecified' && out[i + 2] !== 'unset') converted.add(out[i])
  return converted
}

/** A few files deflated at level 1: the pack's objects are stored when they do not shrink by 5%. */
async function looksIncompressible(root: string, entries: ManifestEntry[]): Promise<boolean> {
  const sample = entries.filter((entry) => entry.mode !== MODE_LINK && entry.size >= 1024)
  if (sample.length === 0) return false
  const picks = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => sample[Math.floor((i * sample.length) / 8)])
  let raw = 0
  let packed = 0
  for (const entry of new Set(picks)) {
    const data = (await readFile(join(root, entry.path))).subarray(0, 16 * 1024)
    raw += data.length
    packed += deflateRawSync(data, { level: 1 }).length
  }
  return packed > raw * 0.95
}

/**
 * Plans the pack for a cold sync: which manifest entries are HEAD's blobs
 * (not changed against HEAD, same type and executable bit, no conversion on
 * checkout), HEAD's objects, and the runner's metadata files. Undefined when
 * git would convert line endings everywhere (`core.autocrlf`).
 */
export async function planSeedPack(root: string, manifest: Manifest, meta: string): Promise<SeedPack | undefined> {
  const head = manifest.git?.head
  if (!head) return undefined
  const [listing, dirty, commit, autocrlf] = await Promise.all([
    gitOut(root, ['ls-tree', '-r', '-t', '-z', '--full-tree', head]),
    gitOut(root, ['diff-index', '--name-only', '-z', head]),
    gitOut(root, ['cat-file', 'commit', head]),
    gitOut(root, ['config', '--get', 'core.autocrlf']).catch(() => Buffer.from('')),
  ])
  if (/^(true|input)$/i.test(autocrlf.toString('utf8').trim())) return undefined
  const text = commit.toString('latin1')
  const tree = /^tree ([0-9a-f]+)$/m.exec(text)?.[1]
  if (!tree) return undefined
  const shallow = /^parent [0-9a-f]+$/m.test(text.slice(0, text.indexOf('\n\n')))
  const rows = split0(listing)
  const changed = new Set(split0(dirty))
  const index = new Map(manifest.entries.map((entry, i) => [entry.path, i]))
  const objects = [head, tree]
  const candidates: { path: string; at: number; id: string }[] = []
  for (const row of rows) {
    const tab = row.indexOf('\t')
    const [mode, type, id] = row.slice(0, tab).split(' ')
    const path = row.slice(tab + 1)
    if (type === 'tree' || type === 'blob') objects.push(id)
    const at = index.get(path)
    if (type !== 'blob' || at === undefined || changed.has(path)) continue
    const entry = manifest.entries[at]
    const same =
      mode === '120000' ? entry.mode === MODE_LINK : entry.mode !== MODE_LINK && (mode === '100755') === (entry.mode === MODE_EXEC)
    if (same) candidates.push({ path, at, id })
  }
  const converted = (await attributesMayApply(root, rows))
    ? await convertedPaths(
        root,
        candidates.map((c) => c.path),
      )
    : new Set<string>()
  const clean = new Set<number>()
  const blobs = new Map<number, string>()
  const paths: string[] = []
  for (const candidate of candidates) {
    if (converted.has(candidate.path)) continue
    clean.add(candidate.at)
    blobs.set(candidate.at, candidate.id)
    paths.push(candidate.path)
  }
  const store = await looksIncompressible(
    root,
    [...clean].map((i) => manifest.entries[i]),
  )
  return {
    clean,
    blobs,
    objects,
    store,
    files: [
      { path: `${meta}/${META_FILES.seedPaths}`, data: Buffer.from(paths.map((path) => `${path}\0`).join('')) },
      { path: `${meta}/${META_FILES.seedCheck}`, data: Buffer.from(`${tree}\n${shallow ? head : ''}\n`) },
    ],
  }
}

/** The seed pack's metadata paths (tar parent entries), known before it is planned. */
export const seedPackPaths = (meta: string) => [META_FILES.seedPaths, META_FILES.seedCheck].map((name) => `${meta}/${name}`)

/**
 * `git pack-objects --stdout` of HEAD's objects: no delta search (deltas the
 * local packs already hold are reused), level 1 for objects it must compress
 * (loose ones), level 0 when the files do not compress.
 */
export function packStream(root: string, pack: SeedPack, objects: string[]): { stream: Readable; done: Promise<void> } {
  const level = pack.store ? '0' : '1'
  const child = spawn(
    'git',
    ['-C', root, '-c', `pack.compression=${level}`, 'pack-objects', '--stdout', '-q', '--window=0', '--delta-base-offset'],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  )
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)))
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`git pack-objects exited ${code}: ${stderr.trim()}`))))
  })
  done.catch(() => {})
  child.stdin.on('error', () => {})
  child.stdin.end(objects.map((id) => `${id}\n`).join(''))
  // Piped at once: Node drops a child's unread output when it exits; the pipe holds it back instead.
  const stream = child.stdout.pipe(new PassThrough())
  stream.on('close', () => child.stdout.destroy())
  return { stream, done }
}

/**
 * The objects of each of `parts` packs (one channel and one `index-pack` each,
 * as a large tar transfer is split): the clean blobs in runs of about equal
 * bytes, in manifest order; the first pack also carries the commit, the trees
 * and the blobs of the other paths.
 */
export function packGroups(pack: SeedPack, entries: ManifestEntry[], parts: number): string[][] {
  const clean = [...pack.clean].sort((a, b) => a - b)
  const cleanIds = new Set(pack.blobs.values())
  const total = clean.reduce((n, at) => n + entries[at].size, 0)
  const groups: string[][] = Array.from({ length: Math.max(1, Math.min(parts, clean.length)) }, () => [])
  groups[0].push(...pack.objects.filter((id) => !cleanIds.has(id)))
  let bytes = 0
  for (const at of clean) {
    groups[Math.min(groups.length - 1, Math.floor((bytes * groups.length) / Math.max(total, 1)))].push(pack.blobs.get(at)!)
    bytes += entries[at].size
  }
  return groups
}

/** The hash a record holds for a file the pack carried but whose bytes here were not HEAD's blob: the next sync sends it. */
const UNKNOWN = '0'.repeat(64)

const blobId = (data: Buffer) => createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex')

async function hashOne(root: string, entry: ManifestEntry, blob: string | undefined): Promise<string> {
  if (entry.mode === MODE_LINK) return blobId(Buffer.from(entry.target ?? '')) === blob ? hashLink(entry.target ?? '') : UNKNOWN
  const abs = join(root, entry.path)
  if (entry.size > 64 * 1024 * 1024) {
    const sha = createHash('sha256')
    const git = createHash('sha1').update(`blob ${entry.size}\0`)
    let size = 0
    for await (const chunk of createReadStream(abs, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
      sha.update(chunk)
      git.update(chunk)
      size += chunk.length
    }
    return size === entry.size && git.digest('hex') === blob ? sha.digest('hex') : UNKNOWN
  }
  const data = await readFile(abs)
  return blobId(data) === blob ? createHash('sha256').update(data).digest('hex') : UNKNOWN
}

/**
 * The record's SHA-256 of each file the pack carries, read here as the tar
 * would; a file whose bytes are no longer HEAD's blob (edited since the
 * plan) is recorded as unknown, so the next sync sends it.
 */
export async function hashClean(
  root: string,
  entries: ManifestEntry[],
  pack: SeedPack,
  onHash: (index: number, hash: string) => void,
): Promise<void> {
  const queue = [...pack.clean]
  const worker = async () => {
    for (let at = queue.pop(); at !== undefined; at = queue.pop()) {
      const entry = entries[at]
      onHash(at, await hashOne(root, entry, pack.blobs.get(at)))
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()])
}
