import { watch, type FSWatcher } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stateDir } from '../../paths.js'

/**
 * The sync's large local files (the stored manifest, the record sent last) read and parsed by a
 * spare worker before any command comes, so a small change does not spend its first 100 ms on
 * JSON. A parsed value is used only while its file's stamp (inode, size, change times) is the one
 * taken before it was read: the sync replaces these files by rename, so any new content is a new
 * stamp. In any other process nothing is kept and `readParsed` just reads.
 */
interface Parsed {
  stamp: string
  value: unknown
}

const parsed = new Map<string, Parsed>()
const watchers: FSWatcher[] = []
let stopped = false
/** How long a spare waits, idle, before it parses. */
export const IDLE_MS = 1000

const stampOf = (file: string) =>
  stat(file).then(
    (s) => `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`,
    () => undefined,
  )

/** `parse` of the file's bytes, from the spare's copy when the file has not changed since; undefined when missing. */
export async function readParsed<T>(file: string, parse: (data: Buffer) => T): Promise<T | undefined> {
  const kept = parsed.get(file)
  if (kept && kept.stamp === (await stampOf(file))) return kept.value as T
  try {
    return parse(await readFile(file))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

/** Parses `file` unless the copy kept has its stamp; true when it parsed. */
async function keepParsed(file: string, parse: (data: Buffer) => unknown): Promise<boolean> {
  const stamp = await stampOf(file)
  if (stopped || !stamp || parsed.get(file)?.stamp === stamp) return false
  try {
    const value = parse(await readFile(file))
    if (!stopped) parsed.set(file, { stamp, value })
  } catch {
    parsed.delete(file)
  }
  return true
}

const lastCheckoutFile = () => join(stateDir(), 'sync', 'last-checkout')

/** Notes the checkout a sync just remembered, for the next spare worker to read ahead. */
export function noteLastCheckout(root: string): Promise<void> {
  return writeFile(lastCheckoutFile(), root).catch(() => {})
}

/** A file of a checkout's cache the spare keeps parsed, and how. */
export interface WarmFile {
  /** The folder the sync writes it in (watched). */
  folder(root: string): string
  /** The file now, for the checkout at `root`; undefined when there is none to read. */
  path(root: string): Promise<string | undefined>
  parse(data: Buffer): unknown
}

/**
 * In a spare worker, once it is ready: parses `files` of the checkout the last sync remembered,
 * and again whenever the sync rewrites them (the folder is watched), until a command is taken.
 * Only while `leader()` says so (one spare does it, not each), checked again on any change in
 * `roster` (the agent's folder: spares come and go there, and so does every command's claim).
 */
export async function readAhead(files: WarmFile[], team: { leader(): boolean; roster?: string } = { leader: () => true }): Promise<void> {
  const root = await readFile(lastCheckoutFile(), 'utf8').catch(() => undefined)
  if (!root || stopped) return
  let queued: NodeJS.Timeout | undefined
  const refresh = async () => {
    if (!team.leader()) return
    let fresh = false
    for (const file of files) {
      const path = await file.path(root)
      if (path && (await keepParsed(path, file.parse))) fresh = true
    }
    // What was parsed is still in the young generation, with the file's bytes and the JSON: the
    // command's first scavenge would copy it all. Collected now, while nothing waits.
    if (fresh && !stopped) (globalThis as { gc?: () => void }).gc?.()
  }
  // Parsing takes ≈ 100 ms of CPU for 20k files: only once nothing has moved for a while (commands
  // back to back take the spare first and keep both cores), and once per burst of renames.
  const soon = () => {
    if (stopped) return
    clearTimeout(queued)
    queued = setTimeout(() => void refresh(), IDLE_MS)
    queued.unref()
  }
  const folders = new Set(files.map((file) => file.folder(root)))
  if (team.roster) folders.add(team.roster)
  for (const folder of folders) {
    try {
      const watcher = watch(folder, soon)
      watcher.on('error', () => {})
      watcher.unref()
      watchers.push(watcher)
    } catch {
      // not there yet: the read below still happens, once
    }
  }
  soon()
}

/** The spare took a command: nothing more is read ahead, and nothing it kept is dropped. */
export function stopReadingAhead(): void {
  stopped = true
  for (const watcher of watchers.splice(0)) watcher.close()
}
