import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { inflateSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { desktopHost, type DesktopHost } from '../support/desktop-host.js'
import { until } from '../support/fixtures.js'

/**
 * The desktop commands against a real X server, window manager and VNC server
 * (test/support/desktop-host.ts), reached as a declared static host through the
 * ssh provider.
 */

/** Decodes an 8-bit RGB/RGBA non-interlaced PNG into its size and the count of distinct colours. */
function decodePng(png: Buffer): { width: number; height: number; colours: number } {
  const width = png.readUInt32BE(16)
  const height = png.readUInt32BE(20)
  const depth = png[24]
  const type = png[25]
  expect(depth).toBe(8)
  const channels = type === 6 ? 4 : type === 2 ? 3 : 0
  expect(channels).toBeGreaterThan(0)
  const idat: Buffer[] = []
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at)
    const kind = png.toString('latin1', at + 4, at + 8)
    if (kind === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + length))
    at += 12 + length
  }
  const raw = inflateSync(Buffer.concat(idat))
  const stride = width * channels
  const colours = new Set<string>()
  let previous = Buffer.alloc(stride)
  for (let row = 0; row < height; row++) {
    const filter = raw[row * (stride + 1)]
    const line = Buffer.from(raw.subarray(row * (stride + 1) + 1, (row + 1) * (stride + 1)))
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? line[i - channels] : 0
      const b = previous[i]
      const c = i >= channels ? previous[i - channels] : 0
      const p = a + b - c
      const pa = Math.abs(p - a)
      const pb = Math.abs(p - b)
      const pc = Math.abs(p - c)
      const add = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter]
      line[i] = (line[i] + add) & 255
    }
    for (let x = 0; x < width; x += 7) colours.add(line.subarray(x * channels, x * channels + 3).toString('hex'))
    previous = line
  }
  return { width, height, colours: colours.size }
}

describe('desktop commands on a host with a real X server and VNC', () => {
  let host: DesktopHost
  let home: CliHome
  const at = () => ['--provider', 'ssh', '--static-host', host.address, '--static-port', '22']
  const cli = (args: string[], options: { input?: string; env?: Record<string, string> } = {}) =>
    runCli(args, { home, input: options.input, env: options.env, timeoutMs: 90_000 })

  beforeAll(async () => {
    host = await desktopHost({ name: 'desktop' })
    home = cliHome()
    home.env = { ...home.env, CRABBOX_SSH_KEY: host.privateKeyPath, CRABBOX_STATIC_DESKTOP: '1' }
  }, 60_000)
  afterAll(async () => {
    if (home) await runCli(['agent', 'stop'], { home })
    await host?.stop()
  })

  it('refuses a host that does not declare a desktop, with the reason and how to declare it', async () => {
    const result = await cli(['screenshot', ...at()], { env: { CRABBOX_STATIC_DESKTOP: '0' } })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('was not created with desktop=true')
    expect(result.stderr).toContain('static.desktop: true')
  })

  it('desktop launch starts an app, and screenshot brings back a PNG of the real display', async () => {
    const launch = await cli(['desktop', 'launch', ...at(), '--', 'xterm', '-geometry', '80x24+40+40', '-bg', 'navy', '-fg', 'yellow'])
    expect(launch.code, launch.stderr).toBe(0)
    expect(launch.stdout).toMatch(/^launched pid=\d+ log=\/tmp\/crabbox-launch-/)
    await until('the xterm window', async () => (await host.onDisplay('xdotool search --class xterm')).stdout.trim() !== '', 10_000)
    const output = join(home.dir, 'screen.png')
    const shot = await cli(['screenshot', ...at(), '--output', output])
    expect(shot.code, shot.stderr).toBe(0)
    expect(shot.stdout).toContain(`${output} 1280x800`)
    const png = decodePng(readFileSync(output))
    expect(png).toMatchObject({ width: 1280, height: 800 })
    // Not blank: the black root window plus the xterm's navy background and its text.
    expect(png.colours).toBeGreaterThan(2)
  })

  it('desktop type puts the text into the focused window on the remote display', async () => {
    // A window whose content can be read back: xterm running cat into a file.
    const file = join(host.home, 'typed.txt')
    await cli(['desktop', 'launch', ...at(), '--', 'xterm', '-title', 'typing', '-e', 'sh', '-c', `cat > ${file}`])
    await until('the typing window', async () => (await host.onDisplay('xdotool search --name typing')).stdout.trim() !== '', 10_000)
    await host.onDisplay('xdotool search --name typing windowactivate --sync windowfocus --sync')
    const typed = await cli(['desktop', 'type', ...at(), '--text', 'hello crabbox 42', '--json'])
    expect(typed.code, typed.stderr).toBe(0)
    expect(JSON.parse(typed.stdout)).toMatchObject({ via: 'keys' })
    const keyed = await cli(['desktop', 'key', ...at(), 'Return'])
    expect(keyed.code, keyed.stderr).toBe(0)
    await until('the typed line', async () => (await host.run(`cat ${file}`)).stdout === 'hello crabbox 42\n', 10_000)
    // Paste (text from stdin, with symbols) puts it on the display's clipboard, read back with xclip.
    const pasted = await cli(['desktop', 'paste', ...at()], { input: 'a&b; "quoted"' })
    expect(pasted.code, pasted.stderr).toBe(0)
    expect((await host.onDisplay('xclip -selection clipboard -out')).stdout).toBe('a&b; "quoted"')
  })

  it('desktop launch --browser opens the URL in the runner Chromium on the display', async () => {
    const browser = { env: { CRABBOX_STATIC_BROWSER: '1' } }
    const launch = await cli(
      ['desktop', 'launch', ...at(), '--browser', '--url', 'data:text/html,<title>crabbox-page</title><h1>hi</h1>'],
      browser,
    )
    expect(launch.code, launch.stderr).toBe(0)
    await until(
      'the browser window',
      async () => /crabbox-page/.test((await host.onDisplay('xdotool search --name crabbox-page getwindowname')).stdout),
      60_000,
    )
    const doctor = await cli(['desktop', 'doctor', ...at(), '--json'], browser)
    expect(JSON.parse(doctor.stdout).checks.find((c: { layer: string }) => c.layer === 'browser')).toMatchObject({ status: 'ok' })
    // Only this host's browser: the runner user is shared with other test hosts.
    for (const { pid, command } of await host.processes())
      if (/chromium/.test(command))
        try {
          process.kill(pid, 'SIGKILL')
        } catch {}
  }, 120_000)

  it('vnc forwards a local port to the runner VNC (it speaks RFB) and prints the password', async () => {
    const refused = await cli(['vnc', ...at(), '--local-port', '0'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('--host-managed')
    const child = spawnCli(['vnc', ...at(), '--local-port', '0', '--host-managed'], { home })
    let out = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
    let err = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))
    try {
      await until('the forward', () => /forwarding until Ctrl-C/.test(out) || child.exitCode !== null, 30_000)
      expect(out, err).toContain(`password: ${host.vncPassword}`)
      const port = Number(/vnc: localhost:(\d+)/.exec(out)![1])
      for (let i = 0; i < 2; i++) {
        const banner = await new Promise<string>((resolve, reject) => {
          const socket = connect({ host: '127.0.0.1', port })
          socket.once('data', (data) => {
            socket.destroy()
            resolve(data.toString('latin1'))
          })
          socket.once('error', reject)
        })
        expect(banner).toMatch(/^RFB 003\.00\d\n/)
      }
    } finally {
      child.kill('SIGINT')
      await new Promise((resolve) => child.once('exit', resolve))
    }
  })

  it('desktop doctor passes on a healthy desktop and names a stopped layer with its fix', async () => {
    const healthy = await cli(['desktop', 'doctor', ...at()])
    expect(healthy.code, healthy.stdout + healthy.stderr).toBe(0)
    for (const layer of ['x-server', 'window-manager', 'vnc', 'input', 'screenshot'])
      expect(healthy.stdout).toMatch(new RegExp(`^ok ${layer}: `, 'm'))
    await host.stopLayer('wm')
    const noWm = await cli(['desktop', 'doctor', ...at()])
    expect(noWm.code).toBe(1)
    expect(noWm.stdout).toMatch(/^problem: window-manager: no window manager runs on :99$/m)
    expect(noWm.stdout).toMatch(/^rescue: crabbox ssh --id \S+ -- 'DISPLAY=:99 setsid nohup openbox /m)
    await host.startLayer('wm')
    await host.stopLayer('vnc')
    const noVnc = await cli(['desktop', 'doctor', ...at(), '--json'])
    expect(noVnc.code).toBe(1)
    const report = JSON.parse(noVnc.stdout) as { checks: Array<{ layer: string; status: string; detail: string; rescue: string[] }> }
    expect(report.checks.find((c) => c.layer === 'vnc')).toMatchObject({
      status: 'problem',
      detail: 'nothing speaks VNC on 127.0.0.1:5900',
      rescue: [expect.stringMatching(/^crabbox ssh --id \S+ -- 'setsid nohup x11vnc -display :99 -localhost /)],
    })
    expect(report.checks.find((c) => c.layer === 'x-server')).toMatchObject({ status: 'ok' })
    const launch = await cli(['desktop', 'launch', ...at(), '--', 'xterm'])
    expect(launch.code).toBe(1)
    expect(launch.stderr).toMatch(/^problem: vnc: nothing listens on 127\.0\.0\.1:5900 on the runner$/m)
    expect(launch.stderr).toMatch(/^rescue: crabbox desktop doctor --id \S+$/m)
    expect(launch.stderr).toMatch(/^rescue: crabbox ssh --id \S+ -- 'setsid nohup x11vnc /m)
    await host.startLayer('vnc')
  })
})
