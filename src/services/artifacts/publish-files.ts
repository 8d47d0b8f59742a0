import { lstat, readdir, realpath, stat } from 'node:fs/promises'
import { extname, isAbsolute, join, relative, sep } from 'node:path'
import { CrabboxError, usageError } from '../../errors.js'

/**
 * What `artifacts publish` uploads: every regular file under --dir, named by its path
 * relative to it (`/` separated). A symlink is followed only when its target is a file
 * inside --dir; one that points out of --dir stops the publish before anything is sent.
 */

export interface PublishFile {
  /** Path below --dir with `/` separators: the object name. */
  name: string
  /** The file to read (a symlink's checked target). */
  path: string
  size: number
  contentType: string
}

const TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.json': 'application/json',
  '.xml': 'application/xml',
  '.html': 'text/html; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
}

export function contentTypeOf(name: string): string {
  return TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream'
}

const inside = (root: string, path: string) => {
  const rel = relative(root, path)
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
}

async function rootOf(dir: string): Promise<string> {
  try {
    const root = await realpath(dir)
    if (!(await stat(root)).isDirectory()) throw usageError(`--dir ${dir} is not a directory`)
    return root
  } catch (error) {
    if (error instanceof CrabboxError) throw error
    throw usageError(
      `--dir ${dir} does not exist`,
      'Collect artifacts first (`crabbox artifacts collect --output DIR`) or point --dir at a folder.',
    )
  }
}

/** The files to publish, sorted by name; `skip` holds names (relative to --dir) left out. */
export async function listPublishFiles(dir: string, skip: ReadonlySet<string> = new Set()): Promise<PublishFile[]> {
  const root = await rootOf(dir)
  const files: PublishFile[] = []
  const walk = async (folder: string): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true })
    for (const entry of entries) {
      const path = join(folder, entry.name)
      const name = relative(root, path).split(sep).join('/')
      if (skip.has(name)) continue
      if (entry.isDirectory()) {
        await walk(path)
        continue
      }
      let target = path
      if (entry.isSymbolicLink()) {
        target = await realpath(path).catch(() => '')
        if (!target || !inside(root, target)) {
          throw new CrabboxError(`refusing to publish ${name}: it is a symlink that leads out of --dir`, {
            exit: 'usage',
            code: 'symlink_escape',
            hint: 'Copy the file into --dir instead of linking to it, or remove the link.',
          })
        }
      }
      const info = await lstat(target)
      // Directories reached through a link are not walked (no cycles); sockets, FIFOs and devices are not artifacts.
      if (!info.isFile()) continue
      files.push({ name, path: target, size: info.size, contentType: contentTypeOf(name) })
    }
  }
  await walk(root)
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}
