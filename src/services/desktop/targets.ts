import { MACOS_VNC_PASSWORD } from '../../cloud/macos-bootstrap.js'
import { WINDOWS_DEFAULTS } from '../../cloud/windows-bootstrap.js'
import { powershellCommand, psQuote } from '../run/target-command.js'

/**
 * Desktop, VNC and screenshots per target OS: where each keeps the per-lease
 * VNC password, how a screenshot is taken, and, for what a target cannot have
 * in this version, the reason it is refused. The desktop commands read them
 * through `desktopLease` (session.ts): a refusal is exit 2 before any SSH.
 */

export type DesktopTarget = 'linux' | 'macos' | 'windows'

export type { DesktopCapability } from './refusal.js'

export const VNC_PASSWORD_PATHS: Readonly<Record<DesktopTarget, string>> = {
  linux: '/var/lib/crabbox/vnc.password',
  macos: MACOS_VNC_PASSWORD,
  windows: `${WINDOWS_DEFAULTS.stateDir}\\vnc.password`,
}

/** The runner command that prints the VNC password (a Windows runner gets it through encoded PowerShell). */
export function vncPasswordCommand(target: DesktopTarget): string {
  const path = VNC_PASSWORD_PATHS[target]
  if (target === 'windows') return powershellCommand(`Get-Content -Raw -LiteralPath ${psQuote(path)}`)
  return `cat '${path}'`
}

/** macOS: `screencapture` of the logged-in console session, PNG bytes on stdout (BSD mktemp, no GNU tools). */
export const MACOS_SCREENSHOT_SCRIPT = `f=$(mktemp /tmp/crabbox-screenshot-XXXXXX) || exit 4
trap 'rm -f "$f"' EXIT
screencapture -x -t png "$f" >&2 || { echo "crabbox-screenshot: screencapture failed (is a user logged in at the console?)" >&2; exit 4; }
cat "$f"
`

// The refusals live on their own (no imports): the lease checks read them before anything is made.
export { desktopRefusal } from './refusal.js'
