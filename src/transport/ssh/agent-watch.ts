import { randomBytes } from 'node:crypto'
import { type FSWatcher, lstatSync, mkdirSync, rmSync, statfsSync, watch, writeFileSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'

/*
 * The connection agent's file watchers: one per checkout the CLI synced, over
 * every folder under its root but `.git` folders and the ones the CLI says
 * to skip (excluded from sync: nothing under them reaches the manifest). Each
 * folder is watched before it is listed, so a folder made meanwhile is seen.
 * A stamp `{ id, seq }` counts the events seen; the CLI keeps the stamp it
 * took before a check that proved the checkout, and an equal stamp later
 * means nothing in those folders changed since. Any doubt gives no stamp (the
 * CLI then asks git, as without an agent): a file system inotify may not see
 * every change on, a folder added, removed or moved (rebuilt under a new id
 * at the next request), the root replaced, a watch that failed, too many
 * folders, or an event queue that did not drain in time.
 *
 * Each event also names its path (folder + name): asked with the stamp the
 * CLI kept (`since`), the answer lists the paths of every event after it, so
 * a small change needs no git listing. The names are only given while the
 * log holds every event since that stamp (the last MAX_LOG paths) and they
 * are at most MAX_NAMED; else none, and the CLI lists with git.
 */

export interface WatchStamp {
  id: string
  seq: number
  /** Paths (relative to the root) of every event after `since` (see Watchers.stamp); absent when they cannot all be named. */
  paths?: string[]
}

/** The stamp a check kept: the paths moved since it are asked for. */
export interface WatchSince {
  id: string
  seq: number
}

/** statfs types whose changes all go through this kernel: ext2/3/4, xfs, btrfs, tmpfs, overlay, zfs, f2fs. */
const LOCAL_FILE_SYSTEMS = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630, 0x2fc12fc1, 0xf2f52010])

/** More folders than this in one checkout are left to git (each folder is one inotify watch). */
const MAX_DIRS = 20_000
/** Checkouts watched at once; the least recently asked about is dropped first. */
const MAX_ROOTS = 8
/** How long after a failed walk the same checkout is walked again. */
const RETRY_MS = 60_000
/** How long the event queue may take to drain before a stamp is given up. */
const BARRIER_MS = 1000
/** Paths remembered per checkout (the most recent event of each); older ones are forgotten. */
const MAX_LOG = 1024
/** More paths than this since a kept stamp: not named (the CLI's git listing is cheaper then). */
export const MAX_NAMED = 200

class RootWatch {
  readonly id = randomBytes(9).toString('hex')
  seq = 0
  /** A folder appeared, went or moved, a watch or the walk failed: the stamp cannot be trusted any more. */
  stale = false
  /** Every folder is watched and listed. */
  ready = false
  /** When the walk failed (a folder could not be watched or listed, too many): not tried again for a while. */
  failedAt?: number
  readonly watchers: FSWatcher[] = []
  readonly dirs = new Set<string>()
  readonly rootIno: number
  /** Path → seq of its latest event, oldest first (seq only grows, so in seq order). */
  private readonly log = new Map<string, number>()
  /** The highest seq whose path was dropped from the log: events up to it can no longer be named. */
  private forgotten = 0

  /** Starts watching; the walk lists folders without blocking the agent (see `ready`). */
  constructor(
    readonly root: string,
    readonly key: string,
    skip: Set<string>,
  ) {
    this.rootIno = lstatSync(root).ino
    this.walk(skip).then(
      () => (this.ready = true),
      () => {
        this.failedAt = Date.now()
        this.close()
      },
    )
  }

  /** Rejects when a folder cannot be watched or listed, or past MAX_DIRS. */
  private async walk(skip: Set<string>): Promise<void> {
    const root = this.root
    const pending = ['']
    while (pending.length > 0 && !this.stale) {
      if (this.dirs.size >= MAX_DIRS) throw new Error('too many folders')
      const dir = pending.pop()!
      const abs = dir ? join(root, dir) : root
      // Watched first, listed second: an entry made in between is an event.
      const watcher = watch(abs, { persistent: false }, (type, name) => this.event(dir, type, name))
      watcher.on('error', () => (this.stale = true))
      this.watchers.push(watcher)
      this.dirs.add(dir)
      for (const dirent of await readdir(abs, { withFileTypes: true })) {
        const path = dir ? `${dir}/${dirent.name}` : dirent.name
        if (dirent.isDirectory() && dirent.name !== '.git' && !skip.has(path)) pending.push(path)
      }
    }
  }

  private event(dir: string, type: string, name: string | Buffer | null): void {
    this.seq++
    const child = name === null ? undefined : dir ? `${dir}/${String(name)}` : String(name)
    if (child === undefined) this.forgotten = this.seq
    // A watched folder's own attributes (a touch): its entries' events come from its own watch.
    else if (type !== 'change' || !this.dirs.has(child)) this.remember(child)
    if (type !== 'rename' || this.stale) return
    // A name that was or now is a folder: the set of watched folders no longer matches the tree.
    try {
      if (child === undefined || this.dirs.has(child) || lstatSync(join(this.root, child), { throwIfNoEntry: false })?.isDirectory())
        this.stale = true
    } catch {
      this.stale = true
    }
  }

  private remember(path: string): void {
    this.log.delete(path)
    this.log.set(path, this.seq)
    if (this.log.size <= MAX_LOG) return
    const [oldest, seq] = this.log.entries().next().value!
    this.log.delete(oldest)
    this.forgotten = seq
  }

  /** The paths of every event after `since.seq` in this watch; undefined when some were forgotten or too many. */
  named(since: WatchSince): string[] | undefined {
    if (since.id !== this.id || since.seq < this.forgotten || since.seq > this.seq) return undefined
    const paths: string[] = []
    // Newest first: the log is in seq order.
    for (const [path, seq] of [...this.log].reverse()) {
      if (seq <= since.seq) break
      if (paths.length >= MAX_NAMED) return undefined
      paths.push(path)
    }
    return paths.sort()
  }

  /** Whether the watches can no longer cover `root`: build them again. */
  broken(): boolean {
    try {
      return this.stale || lstatSync(this.root, { throwIfNoEntry: false })?.ino !== this.rootIno
    } catch {
      return true
    }
  }

  /** Whether the watches cover `root` now. */
  sound(): boolean {
    return this.ready && !this.broken()
  }

  close(): void {
    this.stale = true // a closed watch never answers for the checkout again
    for (const watcher of this.watchers) watcher.close()
  }
}

/**
 * The watchers of one agent. `cookieDir` is a folder of the agent's own: a
 * file made there is the barrier (all watches share the process's one
 * inotify queue, so once its event arrives every earlier change's event has
 * been counted).
 */
export class Watchers {
  private readonly roots = new Map<string, RootWatch>()
  private cookies: FSWatcher | undefined
  private readonly waiting = new Map<string, () => void>()
  private counter = 0

  constructor(private readonly cookieDir: string) {}

  /**
   * The stamp of `root` (`skip`: folders relative to it left out), building
   * the watches when needed; with `since`, also the paths moved after it when
   * all can be named. Never rejects.
   */
  stamp(root: string, skip: string[], since?: WatchSince): Promise<WatchStamp | undefined> {
    return this.take(root, skip, since).catch(() => undefined)
  }

  private async take(root: string, skip: string[], since?: WatchSince): Promise<WatchStamp | undefined> {
    // A folder that moved before this request may only show once the queue drained: then look once more.
    for (let attempt = 0; attempt < 2; attempt++) {
      const current = this.current(root, skip)
      // Still walking (a first request, or the tree's folders changed): no stamp this time.
      if (!current?.ready || !(await this.barrier())) return undefined
      if (!current.sound()) continue
      const paths = since && current.named(since)
      return paths ? { id: current.id, seq: current.seq, paths } : { id: current.id, seq: current.seq }
    }
    return undefined
  }

  /** The watch of `root` with these skips, started again when it broke or has other skips. */
  private current(root: string, skip: string[]): RootWatch | undefined {
    const key = skip.join('\0')
    let current = this.roots.get(root)
    this.roots.delete(root)
    // A walk that failed (inotify's watch limit, too many folders) is not tried again at once.
    if (current?.failedAt !== undefined && current.key === key && Date.now() - current.failedAt < RETRY_MS) {
      this.roots.set(root, current)
      return undefined
    }
    if (current && (current.key !== key || current.broken())) {
      current.close()
      current = undefined
    }
    current ??= this.build(root, key, skip)
    if (current) this.roots.set(root, current) // most recently used last
    return current
  }

  private build(root: string, key: string, skip: string[]): RootWatch | undefined {
    try {
      if (!LOCAL_FILE_SYSTEMS.has(statfsSync(root).type)) return undefined
      const built = new RootWatch(root, key, new Set(skip))
      while (this.roots.size >= MAX_ROOTS) {
        const [oldest, watch] = this.roots.entries().next().value!
        watch.close()
        this.roots.delete(oldest)
      }
      return built
    } catch {
      // The root went away, or it is on a file system inotify cannot vouch for: git decides.
      return undefined
    }
  }

  /** Resolves true once the event queue drained up to now; false on timeout or error. */
  private async barrier(): Promise<boolean> {
    try {
      if (!this.cookies) {
        mkdirSync(this.cookieDir, { recursive: true, mode: 0o700 })
        this.cookies = watch(this.cookieDir, { persistent: false }, (_type, name) => this.waiting.get(String(name))?.())
        this.cookies.on('error', () => (this.cookies = undefined))
      }
      const name = `cookie-${process.pid}-${++this.counter}`
      const path = join(this.cookieDir, name)
      const arrived = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), BARRIER_MS)
        this.waiting.set(name, () => (clearTimeout(timer), resolve(true)))
      })
      writeFileSync(path, '')
      const ok = await arrived
      this.waiting.delete(name)
      rmSync(path, { force: true })
      return ok
    } catch {
      return false
    }
  }

  closeAll(): void {
    for (const watch of this.roots.values()) watch.close()
    this.roots.clear()
    this.cookies?.close()
  }
}
