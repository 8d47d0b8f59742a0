import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { MACOS_SCREENSHOT_SCRIPT, VNC_PASSWORD_PATHS, desktopRefusal, vncPasswordCommand } from '../../src/services/desktop/targets.js'
import { decodeCommand } from '../support/powershell.js'

describe('desktop per target', () => {
  it('reads the VNC password where each target keeps it', () => {
    expect(VNC_PASSWORD_PATHS).toEqual({
      linux: '/var/lib/crabbox/vnc.password',
      macos: '/var/db/crabbox/vnc.password',
      windows: 'C:\\ProgramData\\crabbox\\vnc.password',
    })
    expect(vncPasswordCommand('linux')).toBe("cat '/var/lib/crabbox/vnc.password'")
    expect(vncPasswordCommand('macos')).toBe("cat '/var/db/crabbox/vnc.password'")
    expect(decodeCommand(vncPasswordCommand('windows'))).toBe("Get-Content -Raw -LiteralPath 'C:\\ProgramData\\crabbox\\vnc.password'")
  })

  it('takes macOS screenshots with screencapture, in sh that parses', () => {
    expect(spawnSync('sh', ['-n'], { input: MACOS_SCREENSHOT_SCRIPT }).status).toBe(0)
    expect(MACOS_SCREENSHOT_SCRIPT).toContain('screencapture -x -t png "$f"')
    expect(MACOS_SCREENSHOT_SCRIPT).not.toMatch(/xdpyinfo|scrot|DISPLAY/)
  })

  it('refuses what a target cannot have, saying why', () => {
    expect(desktopRefusal('linux', 'screenshot')).toBeUndefined()
    expect(desktopRefusal('macos', 'screenshot')).toBeUndefined()
    expect(desktopRefusal('macos', 'vnc', { staticHost: true })).toBeUndefined()
    expect(desktopRefusal('macos', 'screenshot', { staticHost: true })).toMatch(/static Mac.*no screenshots/)
    expect(desktopRefusal('macos', 'browser')).toMatch(/no browser on macOS/)
    expect(desktopRefusal('windows', 'vnc', { windowsMode: 'normal' })).toBe(
      'crabbox does not install a Windows desktop yet: no VNC server is set up on Windows runners (vnc refused)',
    )
    expect(desktopRefusal('windows', 'desktop', { windowsMode: 'wsl2' })).toMatch(/WSL2 has no display/)
  })
})
