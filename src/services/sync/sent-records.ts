import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cacheDir } from './hash-cache.js'
import { parseRecords, type RemoteRecord } from './records.js'
import { readParsed, type WarmFile } from './warm-files.js'

/** A record this machine sent, parsed, with its size in bytes. */
export interface SentRecord {
  size: number
  remote: Map<string, RemoteRecord>
}

const parseSent = (data: Buffer): SentRecord => ({ size: data.length, remote: parseRecords(data) })

/**
 * What this machine last sent, keyed by fingerprint: when the runner reports a
 * fingerprint we know, it need not send its manifest back.
 */
export class SentManifests {
  private static readonly keep = 4
  constructor(private readonly dir: string) {}

  static for(repoRoot: string): SentManifests {
    return new SentManifests(join(cacheDir(repoRoot), 'sent'))
  }

  async known(): Promise<string[]> {
    try {
      const names = (await readdir(this.dir)).filter((name) => /^[0-9a-f]{64}$/.test(name))
      const withTimes = await Promise.all(names.map(async (name) => ({ name, at: (await stat(join(this.dir, name))).mtimeMs })))
      return withTimes
        .sort((a, b) => b.at - a.at)
        .slice(0, SentManifests.keep)
        .map((entry) => entry.name)
    } catch {
      return []
    }
  }

  /** The record sent under `fingerprint`, parsed (ahead, by a spare worker, when it could); undefined when not kept. */
  read(fingerprint: string): Promise<SentRecord | undefined> {
    return readParsed(join(this.dir, fingerprint), parseSent).catch(() => undefined)
  }

  /** For a spare worker to read ahead (warm-files.ts): the newest record sent; callers only read what it returns. */
  static readonly warmFile: WarmFile = {
    folder: (root) => SentManifests.for(root).dir,
    async path(root) {
      const sent = SentManifests.for(root)
      const [newest] = await sent.known()
      return newest && join(sent.dir, newest)
    },
    parse: parseSent,
  }

  async write(fingerprint: string, records: Buffer): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    const tmp = join(this.dir, `.${fingerprint}.${process.pid}`)
    await writeFile(tmp, records)
    await rename(tmp, join(this.dir, fingerprint))
    const names = (await readdir(this.dir)).filter((name) => /^[0-9a-f]{64}$/.test(name))
    if (names.length <= SentManifests.keep) return
    const keep = new Set(await this.known())
    await Promise.all(names.filter((name) => !keep.has(name)).map((name) => rm(join(this.dir, name), { force: true })))
  }
}
