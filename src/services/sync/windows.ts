import { CrabboxError } from '../../errors.js'
import { windowsRemoteCommand } from '../run/target-command.js'
import type { ManifestEntry } from './manifest.js'

/**
 * Sync to a native Windows runner: the same tar stream as for Linux, extracted
 * by the `tar.exe` Windows ships (bsdtar) in the run's folder under
 * `C:\crabbox`, started from encoded PowerShell. Windows cannot hold every
 * name a Linux checkout can, so the manifest is checked first and a sync that
 * would lose or rename a file is refused, naming each path and why.
 */

/** Device names Windows reserves in every folder, with or without an extension (`nul.txt` too). */
const RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\.[^.]*)?$/i
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const FORBIDDEN = /[<>:"|?*\\\u0000-\u001f]/
/** A segment longer than this is refused by NTFS. */
const MAX_SEGMENT = 255

/** Why Windows cannot hold this `/`-separated relative path under its own name, or undefined when it can. */
export function windowsNameProblem(path: string): string | undefined {
  for (const segment of path.split('/')) {
    const bad = FORBIDDEN.exec(segment)
    if (bad)
      return `${JSON.stringify(segment)} has ${bad[0] < ' ' ? 'a control character' : `the character ${bad[0]}`}, which Windows forbids in names`
    if (RESERVED.test(segment)) return `${JSON.stringify(segment)} is a device name Windows reserves`
    if (/[ .]$/.test(segment))
      return `${JSON.stringify(segment)} ends with a ${segment.endsWith('.') ? 'dot' : 'space'}, which Windows drops`
    if (segment.length > MAX_SEGMENT) return `a name is longer than ${MAX_SEGMENT} characters`
  }
  return undefined
}

/** Paths that differ only in letter case: one folder on Windows keeps only one of them. */
function caseClashes(entries: ManifestEntry[]): Map<string, string> {
  const seen = new Map<string, string>()
  const out = new Map<string, string>()
  for (const { path } of entries) {
    const key = path.toLowerCase()
    const other = seen.get(key)
    if (other !== undefined) out.set(path, `differs from ${JSON.stringify(other)} only in letter case, and Windows names ignore case`)
    else seen.set(key, path)
  }
  return out
}

/** Every path Windows cannot hold as named, with the reason. */
export function windowsUnsafePaths(entries: ManifestEntry[]): { path: string; reason: string }[] {
  const out: { path: string; reason: string }[] = []
  for (const entry of entries) {
    const reason = windowsNameProblem(entry.path)
    if (reason) out.push({ path: entry.path, reason })
  }
  for (const [path, reason] of caseClashes(entries)) out.push({ path, reason })
  return out
}

/** Refuses (exit 6) a manifest Windows cannot hold as named; lists up to 20 paths. */
export function checkWindowsManifest(entries: ManifestEntry[]): void {
  const unsafe = windowsUnsafePaths(entries)
  if (!unsafe.length) return
  const shown = unsafe.slice(0, 20).map(({ path, reason }) => `  ${path}: ${reason}`)
  if (unsafe.length > shown.length) shown.push(`  … and ${unsafe.length - shown.length} more`)
  throw new CrabboxError(
    `${unsafe.length} path${unsafe.length === 1 ? '' : 's'} cannot be synced to Windows as named:\n${shown.join('\n')}`,
    {
      exit: 'sync',
      code: 'windows_names',
      hint: 'rename them, or leave them out with sync.exclude or .crabboxignore',
    },
  )
}

/** The runner side of a Windows sync: make the folder, then `tar.exe -x[z]f -` there with the tar stream on stdin. */
export const windowsExtractCommand = (workdir: string, gzip: boolean): string =>
  windowsRemoteCommand(['tar.exe', gzip ? '-xzf' : '-xf', '-'], { workdir, makeWorkdir: true }).command
