import { createReadStream, lstatSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import { promisify } from 'node:util'
import { deflateRawSync, gzip } from 'node:zlib'
import tar from 'tar-stream'
import { createHash } from 'node:crypto'
import { hashLink } from './hash-cache.js'
import { CrabboxError } from '../../errors.js'
import { MODE_LINK, type ManifestEntry } from './manifest.js'

/** Below this many bytes compression costs more round-trip-free time than it saves. */
const GZIP_MIN_BYTES = 256 * 1024

export interface TarPlan {
  root: string
  entries: ManifestEntry[]
  /** In-memory files written last (the runner's record), built once every file was read (of every part). */
  extra: () => { path: string; data: Buffer }[] | Promise<{ path: string; data: Buffer }[]>
  /** Paths of those extra files, known up front for their parent directory entries. */
  extraPaths: string[]
  /** Gets the SHA-256 of each entry's bytes as sent (index into `entries`). */
  onHash?: (index: number, hash: string) => void
  /** Counts file bytes as they are read into the tar (progress): a small file at once, a big one per chunk. */
  onBytes?: (bytes: number) => void
}

/** Compress when the payload is big enough to pay off; `CRABBOX_SYNC_COMPRESS=0|1` forces it. */
export function shouldCompress(bytes: number, env: NodeJS.ProcessEnv = process.env): boolean {
  const forced = env.CRABBOX_SYNC_COMPRESS
  if (forced !== undefined && forced !== '') return /^(1|true|yes|on)$/i.test(forced)
  return bytes >= GZIP_MIN_BYTES
}

/** Every ancestor directory of the paths, parents first. */
function ancestors(paths: string[]): string[] {
  const dirs = new Set<string>()
  for (const path of paths) {
    for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) dirs.add(path.slice(0, i))
  }
  return [...dirs].sort()
}

const entryDone = (pack: tar.Pack, header: tar.Headers, body?: Buffer) =>
  new Promise<void>((resolve, reject) => {
    const callback = (error?: Error | null) => (error ? reject(error) : resolve())
    if (body) pack.entry(header, body, callback)
    else pack.entry(header, callback)
  })

/**
 * The changed files as one tar stream (tar-stream here, the runner's `tar`
 * there). Directory entries come first for every parent: GNU tar then replaces
 * a symlink standing where a directory belongs instead of writing through it.
 */
export function tarStream(plan: TarPlan, options: { gzip: boolean }): { stream: Readable; done: Promise<void> } {
  const pack = tar.pack()
  const done = (async () => {
    const now = new Date()
    for (const dir of ancestors([...plan.entries.map((entry) => entry.path), ...plan.extraPaths])) {
      await entryDone(pack, { name: dir, type: 'directory', mode: 0o755, mtime: now })
    }
    for (let index = 0; index < plan.entries.length; index++) {
      const entry = plan.entries[index]
      const mtime = new Date(entry.mtimeMs)
      if (entry.mode === MODE_LINK) {
        plan.onHash?.(index, hashLink(entry.target ?? ''))
        await entryDone(pack, { name: entry.path, type: 'symlink', linkname: entry.target ?? '', mode: 0o777, mtime })
        continue
      }
      const mode = entry.mode & 0o777
      const abs = join(plan.root, entry.path)
      // The header carries the size, so it must be the size we actually read: small files are
      // read whole (their length is the size), big ones streamed at their current size.
      if (entry.size <= 1024 * 1024) {
        const data = readFileSync(abs)
        plan.onHash?.(index, createHash('sha256').update(data).digest('hex'))
        plan.onBytes?.(data.length)
        await entryDone(pack, { name: entry.path, type: 'file', size: data.length, mode, mtime }, data)
        continue
      }
      const size = lstatSync(abs).size
      const hash = createHash('sha256')
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry({ name: entry.path, type: 'file', size, mode, mtime }, (error) =>
          error ? reject(changed(entry.path, error)) : resolve(),
        )
        createReadStream(abs, { highWaterMark: 1024 * 1024 })
          .on('error', reject)
          .on('data', (chunk) => (hash.update(chunk), plan.onBytes?.(chunk.length)))
          .pipe(sink)
      })
      plan.onHash?.(index, hash.digest('hex'))
    }
    for (const file of await plan.extra())
      await entryDone(pack, { name: file.path, type: 'file', size: file.data.length, mode: 0o644, mtime: now }, file.data)
    pack.finalize()
  })()
  done.catch((error) => pack.destroy(error))
  // Node streams around the streamx pack: destroying the returned stream tears down the whole chain.
  const source = Readable.from(pack)
  const stream = options.gzip ? new ParallelGzip() : new Coalesce()
  source.on('error', (error) => stream.destroy(error)).pipe(stream)
  // Tearing the stream down early (a failed exec) stops the reader; the cause is reported through `done` and the exec.
  stream.on('close', () => source.destroy())
  stream.on('error', () => {})
  return { stream, done }
}

const BLOCK = 1024 * 1024

/** A transfer at least this big is split across parallel channels (below it the extra round trip does not pay off). */
const PARALLEL_MIN_BYTES = 16 * 1024 * 1024
/** Channels per large transfer: well below the pool's per-connection channel cap. */
const PARALLEL_PARTS = 4

/** How many channels a transfer of this size uses; `CRABBOX_SYNC_CHANNELS=N` (1-8) forces it. */
export function transferParts(bytes: number, files: number, env: NodeJS.ProcessEnv = process.env): number {
  const forced = Number(env.CRABBOX_SYNC_CHANNELS)
  const parts = Number.isInteger(forced) && forced >= 1 && forced <= 8 ? forced : bytes >= PARALLEL_MIN_BYTES ? PARALLEL_PARTS : 1
  return Math.max(1, Math.min(parts, files))
}

/**
 * Contiguous runs of entries with about equal bytes each (manifest order keeps
 * folders together, which compresses better); `start` indexes into `entries`.
 */
export function splitByBytes<T extends { size: number }>(entries: T[], parts: number): { start: number; entries: T[] }[] {
  const total = entries.reduce((n, entry) => n + entry.size, 0)
  const out: { start: number; entries: T[] }[] = []
  let start = 0
  let bytes = 0
  for (let i = 0; i < entries.length; i++) {
    bytes += entries[i].size
    const left = entries.length - i - 1
    if (out.length < parts - 1 && left > 0 && bytes >= (total * (out.length + 1)) / parts) {
      out.push({ start, entries: entries.slice(start, i + 1) })
      start = i + 1
    }
  }
  if (start < entries.length) out.push({ start, entries: entries.slice(start) })
  return out
}

/** Joins tar-stream's many small chunks (512-byte headers, small files) into 1 MiB writes. */
class Coalesce extends Transform {
  private parts: Buffer[] = []
  private length = 0
  protected takeBlocks(all: boolean): Buffer[] {
    const out: Buffer[] = []
    if (this.length >= BLOCK || (all && this.length > 0)) {
      out.push(Buffer.concat(this.parts, this.length))
      this.parts = []
      this.length = 0
    }
    return out
  }
  protected add(chunk: Buffer): void {
    this.parts.push(chunk)
    this.length += chunk.length
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.add(chunk)
    for (const block of this.takeBlocks(false)) this.push(block)
    callback()
  }
  override _flush(callback: TransformCallback): void {
    for (const block of this.takeBlocks(true)) this.push(block)
    callback()
  }
}

const gzipBlock = promisify(gzip)

/** Blocks stored in a row after one that did not compress, before deflate is tried again. */
const STORE_RUN = 4

const PROBE_SLICE = 4096

/**
 * Whether deflate is worth its CPU on a block: three slices of it (start, middle, end),
 * deflated at level 1 in well under a millisecond, must shrink by 5%. Random bytes,
 * media and archives fail at once instead of after a whole block's deflate.
 */
export function looksCompressible(block: Buffer): boolean {
  if (block.length <= 3 * PROBE_SLICE) return true
  const step = Math.floor((block.length - PROBE_SLICE) / 2)
  const sample = Buffer.concat([0, step, 2 * step].map((at) => block.subarray(at, at + PROBE_SLICE)))
  return deflateRawSync(sample, { level: 1 }).length < sample.length * 0.95
}

/** Fixed gzip level from `CRABBOX_SYNC_GZIP_LEVEL` (1-9), else undefined: adaptive. */
function fixedGzipLevel(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const level = Number(env.CRABBOX_SYNC_GZIP_LEVEL)
  return Number.isInteger(level) && level >= 1 && level <= 9 ? level : undefined
}

/**
 * Gzip on every core: each 1 MiB block becomes its own gzip member, compressed
 * on the libuv pool, emitted in order. Concatenated members are one valid gzip
 * stream for the runner's `tar -xz`. The level adapts per block: while
 * compressed output is still waiting for the SSH window the link is the
 * bottleneck, so the next block gets more effort (up to 6); when the link
 * drains everything, effort goes back down towards 1.
 */
class ParallelGzip extends Coalesce {
  private readonly inFlight: Promise<Buffer>[] = []
  private readonly fixed = fixedGzipLevel()
  private level = 1
  /** Blocks still to be stored (level 0) because recent ones did not compress. */
  private storeNext = 0
  private async drainTo(limit: number): Promise<void> {
    while (this.inFlight.length > limit) this.push(await this.inFlight.shift()!)
  }
  private start(blocks: Buffer[]): void {
    for (const block of blocks) {
      if (this.fixed === undefined) this.level = this.readableLength > 0 ? Math.min(this.level + 1, 6) : Math.max(this.level - 1, 1)
      // Incompressible data (media, archives, random bytes) gains nothing from deflate but costs its CPU:
      // a block whose probe does not shrink is stored; after a block that shrank by less than 5%, the
      // next ones are stored too, then compression is tried again.
      const stored = this.fixed === undefined && (this.storeNext > 0 || !looksCompressible(block))
      if (this.storeNext > 0) this.storeNext--
      const job = gzipBlock(block, { level: stored ? 0 : (this.fixed ?? this.level) })
      if (!stored && this.fixed === undefined)
        job.then(
          (out) => (this.storeNext = out.length > block.length * 0.95 ? STORE_RUN : 0),
          () => {},
        )
      job.catch(() => {}) // surfaced when awaited in order
      this.inFlight.push(job)
    }
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.add(chunk)
    this.start(this.takeBlocks(false))
    this.drainTo(3).then(() => callback(), callback)
  }
  override _flush(callback: TransformCallback): void {
    this.start(this.takeBlocks(true))
    this.drainTo(0).then(() => callback(), callback)
  }
}

const changed = (path: string, cause: unknown) =>
  new CrabboxError(`${path} changed while it was being sent`, {
    exit: 'sync',
    hint: 'Run the command again once the file stops changing.',
    cause,
  })
