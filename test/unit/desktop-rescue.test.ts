import { describe, expect, it } from 'vitest'
import { parseDoctor } from '../../src/services/desktop/doctor.js'
import { launchCommand } from '../../src/services/desktop/launch.js'
import { typesDirectly } from '../../src/services/desktop/input.js'
import { RescueError, rescueLines, withRescue } from '../../src/ui/rescue.js'

const cloud = { name: 'blue-crab', static: false, capabilities: { desktop: true, browser: false, code: false } }
const staticHost = { ...cloud, static: true }

describe('rescue-first output', () => {
  it('names the layer, then the commands in order', () => {
    expect(
      rescueLines({ layer: 'vnc', problem: 'nothing listens', rescue: ['crabbox desktop doctor --id x', 'crabbox vnc --id x'] }),
    ).toEqual(['problem: vnc: nothing listens', 'rescue: crabbox desktop doctor --id x', 'rescue: crabbox vnc --id x'])
  })

  it('withRescue turns a hang into a RescueError within the limit, and aborts the work', async () => {
    let aborted = false
    const hang = withRescue(
      50,
      (reason) => ({ layer: 'bridge', problem: reason, rescue: ['crabbox desktop doctor --id x'] }),
      (signal) => {
        signal.addEventListener('abort', () => (aborted = true))
        return new Promise(() => {})
      },
    )
    const error = await hang.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RescueError)
    expect((error as RescueError).lines).toEqual(['problem: bridge: timeout', 'rescue: crabbox desktop doctor --id x'])
    expect(aborted).toBe(true)
    const failed = await withRescue(
      1000,
      (reason, e) => ({ layer: 'viewer', problem: `${reason}: ${e?.message}`, rescue: [] }),
      async () => {
        throw new Error('boom')
      },
    ).catch((e: unknown) => e)
    expect((failed as RescueError).lines).toEqual(['problem: viewer: failed: boom'])
    expect(
      await withRescue(
        1000,
        () => ({ layer: 'x', problem: '', rescue: [] }),
        async () => 7,
      ),
    ).toBe(7)
  })
})

describe('desktop doctor report', () => {
  const output = [
    'x-server|ok|:99 1920x1080',
    'window-manager|fail|no window manager runs on :99',
    'vnc|fail|VNC listens beyond loopback (0.0.0.0:5900)',
    'browser|fail|no Chromium installed',
    'input|fail|missing: xdotool',
  ].join('\n')

  it('gives each broken layer the exact fix: a unit restart on a cloud runner, the start command on a static host', () => {
    const checks = parseDoctor(output, cloud)
    expect(checks.map((c) => [c.layer, c.status])).toEqual([
      ['x-server', 'ok'],
      ['window-manager', 'problem'],
      ['vnc', 'problem'],
      ['browser', 'skip'],
      ['input', 'problem'],
      ['screenshot', 'problem'],
    ])
    const fix = (layer: string, lease = cloud) => parseDoctor(output, lease).find((c) => c.layer === layer)!.rescue
    expect(fix('window-manager')).toEqual(["crabbox ssh --id blue-crab -- 'sudo systemctl restart crabbox-desktop'"])
    expect(fix('vnc')).toEqual([
      "crabbox ssh --id blue-crab -- 'sudo pkill x11vnc'",
      "crabbox ssh --id blue-crab -- 'sudo systemctl restart crabbox-x11vnc'",
    ])
    expect(fix('input')).toEqual(["crabbox ssh --id blue-crab -- 'sudo apt-get install -y xdotool xclip'"])
    expect(fix('window-manager', staticHost)[0]).toMatch(/-- 'DISPLAY=:99 setsid nohup openbox /)
    // A layer the runner never reported is a problem, not a pass.
    expect(parseDoctor(output, cloud).find((c) => c.layer === 'screenshot')!.detail).toMatch(/did not report/)
    // A browser the lease asked for is a problem when missing.
    expect(parseDoctor(output, { ...cloud, capabilities: { ...cloud.capabilities, browser: true } })[3].status).toBe('problem')
  })
})

describe('desktop input and launch', () => {
  it('types plain words key by key and sends the rest through the clipboard', () => {
    expect(typesDirectly('hello crabbox 42')).toBe(true)
    for (const text of ['a&b', 'line\nbreak', 'x'.repeat(65), '', "it's"]) expect(typesDirectly(text)).toBe(false)
  })

  it('launches the browser windowed or fullscreen, or the quoted command', () => {
    expect(launchCommand({ browser: true, url: 'https://example.com/?a=1&b=2' }, [])).toMatch(
      /^"\$BROWSER" .*--window-size=1500,900 .*'https:\/\/example\.com\/\?a=1&b=2'$/,
    )
    expect(launchCommand({ browser: true, fullscreen: true }, [])).toContain('--start-fullscreen')
    expect(launchCommand({}, ['xterm', '-title', 'two words'])).toBe("xterm -title 'two words'")
    expect(() => launchCommand({}, [])).toThrow(/nothing to launch/)
    expect(() => launchCommand({ url: 'x' }, ['xterm'])).toThrow(/--url needs --browser/)
  })
})
