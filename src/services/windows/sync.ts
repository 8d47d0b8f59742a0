import type { Config } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import type { SshSession } from '../../transport/ssh/types.js'
import { formatBytes, plural } from '../../ui/format.js'
import type { Progress } from '../../ui/progress.js'
import { buildManifest, checkSize } from '../sync/manifest.js'
import { shouldCompress, tarStream } from '../sync/transfer.js'
import { checkWindowsManifest, windowsExtractCommand } from '../sync/windows.js'

/**
 * Sync to a native Windows runner (`--windows-mode normal`): the manifest
 * Linux runners get, checked for names Windows cannot hold (exit 6 before
 * anything is sent), then the whole checkout as one tar stream on the stdin of
 * `tar.exe` in the run's folder, started from encoded PowerShell. There is no
 * probe, fingerprint or delta on Windows yet: every run sends every file, and
 * a file deleted locally stays on the runner until the lease ends.
 */
export async function syncWindows(options: {
  repoRoot: string
  workdir: string
  config: Config['sync']
  session: SshSession
  progress: Progress
  forceLarge?: boolean
  signal?: AbortSignal
}): Promise<{ skipped: boolean; phases: { name: string; ms: number }[]; ms: number }> {
  const started = performance.now()
  options.progress.phase('sync: building manifest')
  const manifest = await buildManifest(options.repoRoot, options.config)
  checkWindowsManifest(manifest.entries)
  for (const warning of checkSize(manifest, options.config, { forceLarge: options.forceLarge }).warnings ?? [])
    options.progress.warn(warning)
  const manifestMs = performance.now() - started
  const gzip = shouldCompress(manifest.bytes)
  options.progress.phase(`sync: sending ${plural(manifest.files, 'file')}, ${formatBytes(manifest.bytes)} to Windows`)
  const tar = tarStream({ root: options.repoRoot, entries: manifest.entries, extra: () => [], extraPaths: [] }, { gzip })
  let said = ''
  const sent = performance.now()
  const [result] = await Promise.all([
    options.session.exec(windowsExtractCommand(options.workdir, gzip), {
      stdin: tar.stream,
      signal: options.signal,
      onStdout: (chunk) => (said += chunk.toString()),
      onStderr: (chunk) => (said += chunk.toString()),
    }),
    tar.done,
  ])
  if (result.code !== 0)
    throw new CrabboxError(
      `tar.exe on the Windows runner failed (exit ${result.code ?? result.signal}): ${said.trim().slice(-500) || 'no output'}`,
      {
        exit: 'sync',
        code: 'sync_failed',
        hint: `check that ${options.workdir} is writable and that tar.exe is the one Windows ships`,
      },
    )
  options.progress.done(`synced ${plural(manifest.files, 'file')} to ${options.workdir}`)
  const transferMs = performance.now() - sent
  return {
    skipped: false,
    phases: [
      { name: 'manifest', ms: Math.round(manifestMs) },
      { name: 'transfer', ms: Math.round(transferMs) },
    ],
    ms: Math.round(performance.now() - started),
  }
}
