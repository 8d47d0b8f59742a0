import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, startBroker, type BrokerHandle } from '../support/broker.js'
import { launchBrowser } from '../support/browser.js'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { desktopHost, type DesktopHost } from '../support/desktop-host.js'
import { createFakeGithub } from '../support/fake-github.js'
import { serveFake, type ServedFake } from '../support/fake-hetzner.js'
import { until } from '../support/fixtures.js'
import { pidAlive } from '../support/processes.js'
import { checkPage, screenshot, signIn, type PortalUser } from '../support/portal.js'

/**
 * The WebVNC page end to end, nothing faked on the screen's path: a host with a real X
 * server, window manager and x11vnc (test/support/desktop-host.ts) in the static pool of
 * `crabbox broker dev`, a desktop lease on it, the real `crabbox webvnc` bridge (as its
 * daemon), and the portal's page in real Chromium, signed in through the GitHub fake. The
 * page runs noVNC on the viewer socket through the lease's relay object.
 */

const github = createFakeGithub({
  users: [{ login: 'octo', emails: [{ email: 'octo@example.com', primary: true, verified: true }], orgs: { acme: 'active' } }],
})

/** What the canvas shows: a hash of its pixels and how many distinct colours a sample of them has. */
interface CanvasView {
  width: number
  height: number
  hash: number
  colours: number
}

const canvasView = (page: Page): Promise<CanvasView | undefined> =>
  page.evaluate(() => {
    // Runs in the page: the test's tsconfig has no DOM types, so the globals are typed by hand.
    type Canvas = { width: number; height: number; getContext(kind: '2d'): { getImageData(...a: number[]): { data: Uint8ClampedArray } } }
    const doc = (globalThis as unknown as { document: { querySelector(s: string): Canvas | null } }).document
    const canvas = doc.querySelector('#vnc-screen canvas')
    if (!canvas || !canvas.width || !canvas.height) return undefined
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height)
    let hash = 0
    const colours = new Set<number>()
    for (let i = 0; i < data.length; i += 4) {
      const rgb = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2]
      hash = (Math.imul(hash, 31) + rgb) | 0
      if (i % 28 === 0) colours.add(rgb)
    }
    return { width: canvas.width, height: canvas.height, hash, colours: colours.size }
  })

const attr = (page: Page, name: string) => page.locator('#vnc').getAttribute(`data-${name}`)

describe('the WebVNC page in a browser, through the broker and the crabbox webvnc bridge', () => {
  let host: DesktopHost
  let broker: BrokerHandle
  let served: ServedFake
  let browser: Browser
  let home: CliHome
  let octo: PortalUser
  let leaseId: string
  let env: Record<string, string | undefined>

  const cli = (args: string[], timeoutMs = 90_000) => runCli(args, { home, env, timeoutMs })

  beforeAll(async () => {
    served = await serveFake(github.handler)
    host = await desktopHost({ name: 'webvnc' })
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    broker = await startBroker({
      port,
      env: {
        CRABBOX_SHARED_TOKEN: 'e2e-webvnc-token',
        CRABBOX_STATIC_POOL: JSON.stringify([
          { name: 'desk', host: host.address, port: 22, user: host.user, workRoot: `${host.home}/work`, desktop: true },
        ]),
        CRABBOX_MIN_LEASE_SECONDS: '1',
        CRABBOX_SESSION_SECRET: 'e2e-webvnc-session-secret',
        CRABBOX_DEFAULT_ORG: 'acme',
        CRABBOX_PUBLIC_URL: url,
        CRABBOX_GITHUB_CLIENT_ID: github.clientId,
        CRABBOX_GITHUB_CLIENT_SECRET: github.clientSecret,
        CRABBOX_GITHUB_URL: served.url,
        CRABBOX_GITHUB_API_URL: served.url,
      },
    })
    browser = await launchBrowser()
    home = cliHome()
  }, 180_000)

  afterAll(async () => {
    if (home) await runCli(['webvnc', 'daemon', 'stop'], { home, env })
    await octo?.context.close()
    await browser?.close()
    await broker?.stop()
    await host?.stop()
    await served?.close()
  })

  it('a signed-in user gets a desktop lease; the lease page links the WebVNC page, which says how to start the bridge', async () => {
    octo = await signIn(browser, broker.url, github, 'octo', { permissions: ['clipboard-read', 'clipboard-write'] })
    env = {
      CRABBOX_COORDINATOR: broker.url,
      CRABBOX_COORDINATOR_TOKEN: octo.token,
      CRABBOX_PROVIDER: 'static',
      CRABBOX_SSH_KEY: host.privateKeyPath,
      CRABBOX_NO_AGENT: '1',
      NODE_EXTRA_CA_CERTS: undefined,
      // No display here: --open has nothing to open with, and says so.
      DISPLAY: undefined,
      WAYLAND_DISPLAY: undefined,
    }
    const warm = await cli(['warmup', '--desktop', '--json', '--idle-timeout', '30m'])
    expect(warm.code, warm.stderr).toBe(0)
    leaseId = JSON.parse(warm.stdout).id

    await octo.page.goto(`${broker.url}/portal/leases/${leaseId}`)
    await octo.page.getByRole('link', { name: 'Open the desktop (WebVNC)' }).click()
    await octo.page.waitForURL(`${broker.url}/portal/leases/${leaseId}/vnc`)
    // No bridge yet: the status names the command, the page keeps retrying.
    await expect
      .poll(() => octo.page.locator('#vnc-message').textContent(), { timeout: 30_000 })
      .toContain('WebVNC daemon not running; run: crabbox webvnc')
    expect(await octo.page.textContent('main')).toContain(`crabbox webvnc --provider static --target linux --id`)
    expect(await attr(octo.page, 'state')).not.toBe('connected')
    // The viewer socket's refusals (409, no bridge) are the browser's own console lines.
    octo.problems.errors.splice(0)
    expect(await octo.cspOf(octo.page)).toEqual([])
  })

  it('shows the remote desktop through the real bridge, and a new window on it', async () => {
    // desktop launch --webvnc: the app, then the bridge daemon and the page's URL, with the
    // runner's VNC password in its fragment (read over SSH; a fragment never reaches the broker).
    const started = await cli(['desktop', 'launch', '--id', leaseId, '--webvnc', '--json', '--', 'xterm', '-iconic'])
    expect(started.code, started.stderr).toBe(0)
    expect(JSON.parse(started.stdout).webvnc).toMatchObject({
      leaseId,
      alreadyRunning: false,
      portalUrl: `${broker.url}/portal/leases/${leaseId}/vnc#password=${host.vncPassword}`,
    })
    // --open without a display here: the daemon is already running, the URL is printed, and it says it could not open it.
    const opened = await cli(['desktop', 'launch', '--id', leaseId, '--open', '--', 'xterm', '-iconic'])
    expect(opened.code, opened.stderr).toBe(0)
    expect(opened.stdout).toContain('webvnc: daemon already running')
    expect(opened.stdout).toContain(`portal: ${broker.url}/portal/leases/${leaseId}/vnc#password=${host.vncPassword}\n`)
    expect(opened.stderr).toContain('could not open a browser here; open the portal URL above')
    // The URL as the CLI printed it: the page takes the password from the fragment.
    await octo.page.goto(JSON.parse(started.stdout).webvnc.portalUrl)
    await expect.poll(() => attr(octo.page, 'state'), { timeout: 60_000 }).toBe('connected')
    await expect.poll(() => attr(octo.page, 'role'), { timeout: 30_000 }).toBe('controller')
    // Until the bridge was up, the page's retries were refused (409): the browser logs each.
    expect(
      octo.problems.errors.every((e) => e.includes('409') || e.includes('Connection closed (code: 1006)')),
      octo.problems.errors.join('\n'),
    ).toBe(true)
    octo.problems.errors.splice(0)
    expect(await octo.page.locator('#vnc-pill').textContent()).toBe('connected')
    expect(await octo.page.locator('#vnc-password-form').isVisible()).toBe(false)
    const first = await until('the remote framebuffer', async () => {
      const view = await canvasView(octo.page)
      return view && view.width === 1280 && view.height === 800 ? view : undefined
    })

    const launched = await cli([
      'desktop',
      'launch',
      '--id',
      leaseId,
      '--',
      'xterm',
      '-geometry',
      '60x12+100+100',
      '-bg',
      'navy',
      '-fg',
      'yellow',
    ])
    expect(launched.code, launched.stderr).toBe(0)
    // The xterm's navy window and yellow text reach the canvas: new pixels, more colours.
    const after = await until('the xterm on the canvas', async () => {
      const view = await canvasView(octo.page)
      return view && view.hash !== first.hash && view.colours > 2 ? view : undefined
    })
    expect(after.colours).toBeGreaterThan(first.colours)
    await checkPage(octo)
    await screenshot(octo.page, 'webvnc')
  })

  it('round-trips clipboard text both ways', async () => {
    // Page → remote: ClientCutText; x11vnc puts it on the display's clipboard.
    const local = `from the page ${process.pid}`
    await octo.page.getByLabel('Text for the remote clipboard').fill(local)
    await octo.page.getByRole('button', { name: 'Send to the desktop' }).click()
    await until('the remote clipboard', async () => (await host.onDisplay('xclip -selection clipboard -o')).stdout === local, 30_000)

    // Ctrl+V over the screen: the browser's clipboard goes in as ClientCutText, then Ctrl+V as keys.
    const pasted = `pasted ${process.pid}`
    await octo.page.evaluate(
      (text) =>
        (globalThis as unknown as { navigator: { clipboard: { writeText(t: string): Promise<void> } } }).navigator.clipboard.writeText(
          text,
        ),
      pasted,
    )
    await octo.page.locator('#vnc-screen canvas').click({ position: { x: 5, y: 5 } })
    await octo.page.keyboard.press('Control+V')
    await until(
      'the pasted text on the remote clipboard',
      async () => (await host.onDisplay('xclip -selection clipboard -o')).stdout === pasted,
      30_000,
    )

    // Remote → page: a program on the desktop copies; x11vnc sends ServerCutText; the page shows it and copies it here.
    const remote = `from the desktop ${process.pid}`
    const copied = await host.onDisplay(`(printf %s '${remote}' | xclip -selection clipboard -i) >/dev/null 2>&1 </dev/null`)
    expect(copied.code, copied.stderr).toBe(0)
    await expect.poll(() => attr(octo.page, 'remote-clipboard'), { timeout: 30_000 }).toBe(remote)
    expect(await octo.page.getByLabel('Remote clipboard (copied on the desktop)').inputValue()).toBe(remote)
    await octo.page.getByRole('button', { name: 'Copy to this computer' }).click()
    await expect
      .poll(() =>
        octo.page.evaluate(() =>
          (globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }).navigator.clipboard.readText(),
        ),
      )
      .toBe(remote)
    await checkPage(octo)
  })

  it('a killed bridge: the page says so, status prints problem and rescue lines, and webvnc reset recovers the viewer', async () => {
    const before = Number(await attr(octo.page, 'connections'))
    const shown = JSON.parse((await cli(['webvnc', 'daemon', 'status', '--json'])).stdout) as { daemons: { pid: number }[] }
    const pid = shown.daemons[0]!.pid
    process.kill(pid, 'SIGKILL')
    await until('the daemon gone', () => !pidAlive(pid), 10_000)
    await expect.poll(() => attr(octo.page, 'state'), { timeout: 30_000 }).not.toBe('connected')

    const status = await cli(['webvnc', 'status', '--id', leaseId])
    expect(status.stdout).toContain(`problem: bridge: the WebVNC bridge (pid ${pid}) is not running; it was killed or crashed`)
    expect(status.stdout).toContain(`rescue: crabbox webvnc reset --id ${leaseId}`)

    const reset = await cli(['webvnc', 'reset', '--id', leaseId])
    expect(reset.code, reset.stderr).toBe(0)
    expect(reset.stdout).toMatch(/daemon restarted \(pid \d+\)/)
    // The page reconnects by itself (backoff) to the restarted bridge and shows the desktop again.
    await expect.poll(() => attr(octo.page, 'state'), { timeout: 60_000 }).toBe('connected')
    expect(Number(await attr(octo.page, 'connections'))).toBeGreaterThan(before)
    await until('the framebuffer again', async () => ((await canvasView(octo.page))?.colours ?? 0) > 2)
    octo.problems.errors.splice(0)
  })
})
