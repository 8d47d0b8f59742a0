/** The target OSes a desktop capability is checked for (as in `targets.ts`). */
type DesktopTarget = 'linux' | 'macos' | 'windows'

/** What a desktop command needs from the runner: `input` is click/type/key/paste, `launch` starts an app, `video` records the screen. */
export type DesktopCapability = 'desktop' | 'screenshot' | 'vnc' | 'browser' | 'input' | 'launch' | 'video'

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
