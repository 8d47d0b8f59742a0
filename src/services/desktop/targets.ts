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

/** What a desktop command needs from the runner: `input` is click/type/key/paste, `launch` starts an app, `video` records the screen. */
export type DesktopCapability = 'desktop' | 'screenshot' | 'vnc' | 'browser' | 'input' | 'launch' | 'video'

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

/**
 * Why a target cannot have a desktop capability in this version, or undefined
 * when it can. `staticHost`: the host is not one crabbox bootstrapped.
 */
export function desktopRefusal(
  target: DesktopTarget,
  capability: DesktopCapability,
  options: { windowsMode?: 'normal' | 'wsl2'; staticHost?: boolean } = {},
): string | undefined {
  if (target === 'linux') return undefined
  if (target === 'windows')
    return options.windowsMode === 'wsl2'
      ? `a WSL2 runner has no desktop: WSL2 has no display of its own (${capability} refused)`
      : `crabbox does not install a Windows desktop yet: no VNC server is set up on Windows runners (${capability} refused)`
  if (capability === 'browser') return 'crabbox installs no browser on macOS runners; Safari is there, use it from your command'
  if (capability === 'input' || capability === 'launch' || capability === 'video')
    return `crabbox has no ${capability === 'video' ? 'screen recorder' : capability === 'launch' ? 'app launcher' : 'input tool'} for macOS runners yet (${capability} refused): use crabbox vnc and Screen Sharing`
  if (options.staticHost && capability !== 'vnc')
    return `a static Mac's screen belongs to its owner: crabbox takes no ${capability === 'screenshot' ? 'screenshots' : 'desktop'} there (use vnc --host-managed)`
  return undefined
}
