import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DOCTOR_SCRIPT, MACOS_DOCTOR_SCRIPT, doctorScript, parseDoctor } from '../../src/services/desktop/doctor.js'
import { SCREENSHOT_SCRIPT, captureScreenshot } from '../../src/services/desktop/screenshot.js'
import { rescueFor, type DesktopLease } from '../../src/services/desktop/session.js'
import { leaseOS } from '../../src/services/ssh.js'
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

describe('desktop per target, as the commands use it', () => {
  const macLease = (session: { exec: (script: string) => Promise<{ code: number }> }) =>
    ({
      leaseId: 'cbx_000000000001',
      name: 'mac-crab',
      target: { host: '192.0.2.1', port: 22, fallbackPorts: [], user: 'ec2-user', privateKeyPath: '', knownHostsPath: '' },
      capabilities: { desktop: true, browser: false, code: false },
      static: false,
      os: { target: 'macos' },
      session,
      close: async () => {},
    }) as unknown as DesktopLease

  it('refuses on macOS what crabbox has nothing for there yet, naming it', () => {
    expect(desktopRefusal('macos', 'input')).toBe(
      'crabbox has no input tool for macOS runners yet (input refused): use crabbox vnc and Screen Sharing',
    )
    expect(desktopRefusal('macos', 'launch')).toMatch(/no app launcher for macOS.*launch refused/)
    expect(desktopRefusal('macos', 'video')).toMatch(/no screen recorder for macOS.*video refused/)
    expect(desktopRefusal('linux', 'input')).toBeUndefined()
    expect(desktopRefusal('linux', 'video')).toBeUndefined()
    expect(desktopRefusal('windows', 'input', { windowsMode: 'wsl2' })).toMatch(/WSL2 has no display.*input refused/)
  })

  it('sends the macOS screenshot script to a macOS lease, and the X one to Linux', async () => {
    const sent: string[] = []
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      Buffer.alloc(8),
      Buffer.from([0, 0, 0, 4, 0, 0, 0, 3]),
    ])
    const session = {
      exec: async (script: string, options: { onStdout: (chunk: Buffer) => void }) => {
        sent.push(script)
        options.onStdout(png)
        return { code: 0 }
      },
    }
    const lease = macLease(session as never)
    expect((await captureScreenshot(lease)).equals(png)).toBe(true)
    await captureScreenshot({ ...lease, os: { target: 'linux' } })
    expect(sent).toEqual([MACOS_SCREENSHOT_SCRIPT, SCREENSHOT_SCRIPT])
  })

  it('checks a macOS desktop with its own doctor script: Screen Sharing, the password, screencapture', () => {
    expect(doctorScript({ os: { target: 'macos' } })).toBe(MACOS_DOCTOR_SCRIPT)
    expect(doctorScript({ os: { target: 'linux' } })).toBe(DOCTOR_SCRIPT)
    expect(spawnSync('sh', ['-n'], { input: MACOS_DOCTOR_SCRIPT }).status).toBe(0)
    expect(MACOS_DOCTOR_SCRIPT).not.toMatch(/xdpyinfo|timeout |ss -|bash|\/dev\/tcp/)
    // Run here with stand-ins for nc (a Screen Sharing greeting) and screencapture on PATH.
    const bin = mkdtempSync(join(tmpdir(), 'crabbox-mac-doctor-'))
    writeFileSync(join(bin, 'nc'), '#!/bin/sh\nprintf "RFB 003.889\\n"\n', { mode: 0o755 })
    writeFileSync(join(bin, 'screencapture'), '#!/bin/sh\nexit 0\n', { mode: 0o755 })
    const run = spawnSync('sh', ['-c', MACOS_DOCTOR_SCRIPT], { env: { PATH: `${bin}:/usr/bin:/bin` }, encoding: 'utf8' })
    const checks = parseDoctor(run.stdout, {
      name: 'mac-crab',
      static: false,
      capabilities: { desktop: true, browser: false, code: false },
      os: { target: 'macos' },
    })
    rmSync(bin, { recursive: true, force: true })
    expect(checks.map((c) => [c.layer, c.status])).toEqual([
      ['x-server', 'skip'],
      ['window-manager', 'skip'],
      // The password file is not on this machine.
      ['vnc', 'problem'],
      ['browser', 'skip'],
      ['input', 'skip'],
      ['screenshot', 'ok'],
    ])
    expect(checks[2].detail).toBe('/var/db/crabbox/vnc.password is missing or not readable by ' + userInfo().username)
    // The fixes are the Mac's: its password file, Screen Sharing's launchd service; never x11vnc or apt-get.
    expect(checks[2].rescue).toEqual([
      "crabbox ssh --id mac-crab -- 'sudo chown $(id -un) /var/db/crabbox/vnc.password && sudo chmod 0600 /var/db/crabbox/vnc.password'",
    ])
    const lease = { name: 'mac-crab', static: false, os: { target: 'macos' } } as const
    expect(rescueFor(lease, 'vnc')).toEqual([
      'crabbox desktop doctor --id mac-crab',
      "crabbox ssh --id mac-crab -- 'sudo launchctl kickstart -k system/com.apple.screensharing'",
    ])
    expect(rescueFor({ ...lease, static: true }, 'screenshot')).toEqual([
      'crabbox desktop doctor --id mac-crab',
      'crabbox vnc --id mac-crab --host-managed',
    ])
  })

  it('reads a lease OS from the broker record, the details, or the fallback', () => {
    const linux = { target: 'linux' } as const
    expect(leaseOS({ details: { record: { target: 'macos' } } }, linux)).toEqual({ target: 'macos' })
    expect(leaseOS({ details: { record: { target: 'windows', windowsMode: 'wsl2' } } }, linux)).toEqual({
      target: 'windows',
      windowsMode: 'wsl2',
    })
    expect(leaseOS({ details: { target: 'win' } }, linux)).toEqual({ target: 'windows', windowsMode: 'normal' })
    expect(leaseOS({ details: {} }, { target: 'macos' })).toEqual({ target: 'macos' })
  })
})
