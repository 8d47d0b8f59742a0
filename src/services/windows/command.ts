import { basename } from 'node:path'
import type { RemoteCommand } from '../run/remote-command.js'
import { windowsRemoteCommand } from '../run/target-command.js'

/** `C:\crabbox\<leaseID>\<repoName>`: the run's folder on a native Windows runner. */
export const windowsWorkdir = (workRoot: string, leaseId: string, repoRoot: string): string =>
  `${workRoot.replace(/[\\/]+$/, '')}\\${leaseId}\\${basename(repoRoot)}`

/**
 * The native Windows run: one encoded PowerShell line that goes to the run's
 * folder (making it first with --no-sync, when no sync did), sets the
 * forwarded environment and starts the program, so the exec needs no folder
 * or environment of its own.
 */
export function windowsRunCommand(
  argv: string[],
  options: { workdir: string; env: Record<string, string>; shell?: boolean; makeWorkdir?: boolean },
): RemoteCommand {
  const { command, viaShell } = windowsRemoteCommand(argv, options)
  return { command, viaShell }
}
