import { rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/broker.js'
import { launchBrowser } from '../support/browser.js'
import { runCli, spawnCli } from '../support/cli.js'
import { createFakeGithub } from '../support/fake-github.js'
import { serveFake, type ServedFake } from '../support/fake-hetzner.js'
import { collectOutput, until } from '../support/fixtures.js'
import { checkPage, overflowsSideways, screenshot, signIn, type PortalUser } from '../support/portal.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'
import { tcpProxy, type TcpProxy } from '../support/tcp-proxy.js'

/**
 * The portal in real Chromium against `crabbox broker dev` with a static-pool host, signed
 * in through the GitHub fake. The browser reaches the broker only through a TCP proxy, which
 * is the broker's public origin (CRABBOX_PUBLIC_URL), so the test can cut the page's
 * connections; the CLI talks to the broker directly, with the user token the browser's
 * session cookie holds (the same identity). Every page is checked with axe-core (no serious
 * or critical violation), for CSP violations and for script errors.
 */

const github = createFakeGithub({
  users: [
    { login: 'octo', emails: [{ email: 'octo@example.com', primary: true, verified: true }], orgs: { acme: 'active' } },
    { login: 'hubot', emails: [{ email: 'hubot@example.com', primary: true, verified: true }], orgs: { acme: 'active' } },
  ],
})
let served: ServedFake
let proxy: TcpProxy
let portal: string
let browser: Browser

const rig = brokerWithStaticHosts({
  token: 'e2e-portal-token',
  owner: 'unused@example.com',
  names: ['portal-box'],
  env: { CRABBOX_SESSION_SECRET: 'e2e-portal-session-secret', CRABBOX_DEFAULT_ORG: 'acme' },
  async prepare() {
    served = await serveFake(github.handler)
    const port = await freePort()
    proxy = await tcpProxy({ host: '127.0.0.1', port })
    portal = `http://127.0.0.1:${proxy.port}`
    return {
      port,
      env: {
        CRABBOX_PUBLIC_URL: portal,
        CRABBOX_GITHUB_CLIENT_ID: github.clientId,
        CRABBOX_GITHUB_CLIENT_SECRET: github.clientSecret,
        CRABBOX_GITHUB_URL: served.url,
        CRABBOX_GITHUB_API_URL: served.url,
      },
    }
  },
})

beforeAll(async () => {
  browser = await launchBrowser()
})

afterAll(async () => {
  await browser?.close()
  await proxy?.close()
  await served?.close()
})

/** The CLI as `user`: their session's user token as the broker token. */
const cliEnv = (user: PortalUser, extra: Record<string, string | undefined> = {}) =>
  rig.cliEnv({ CRABBOX_COORDINATOR_TOKEN: user.token, CRABBOX_OWNER: undefined, ...extra })

/** A command that prints 20 lines, waits for `go` to exist on the host, then prints 20 more. */
const printer = (go: string) =>
  [
    'i=1; while [ $i -le 20 ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done',
    `while [ ! -e ${go} ]; do sleep 0.1; done`,
    'while [ $i -le 40 ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done',
  ].join('; ')

const expectedOutput = Array.from({ length: 40 }, (_, i) => `line ${i + 1}\n`).join('')

describe('the portal in a browser', () => {
  let octo: PortalUser
  let hubot: PortalUser
  let leaseId: string
  let runId: string

  afterAll(async () => {
    await octo?.context.close()
    await hubot?.context.close()
  })

  it('signs in through GitHub and shows the lease `crabbox warmup` made', async () => {
    octo = await signIn(browser, portal, github, 'octo')
    await checkPage(octo)
    const warm = await runCli(['warmup', '--json', '--idle-timeout', '30m'], { home: rig.home, env: cliEnv(octo) })
    expect(warm.code, warm.stderr).toBe(0)
    leaseId = JSON.parse(warm.stdout).id
    await octo.page.reload()
    const link = octo.page.locator(`a[href="/portal/leases/${leaseId}"]`)
    await expect.poll(() => link.count()).toBe(1)
    await checkPage(octo)
    await screenshot(octo.page, 'leases')

    await link.click()
    await octo.page.waitForURL(`${portal}/portal/leases/${leaseId}`)
    expect(await octo.page.locator('h1').textContent()).toContain(leaseId)
    expect(await octo.page.textContent('main')).toContain(`crabbox ssh --id ${leaseId}`)
    await checkPage(octo)
    await screenshot(octo.page, 'lease')
  })

  it('shares the lease with a second user, who sees it only then', async () => {
    hubot = await signIn(browser, portal, github, 'hubot')
    const before = await hubot.page.goto(`${portal}/portal/leases/${leaseId}`)
    expect(before?.status()).toBe(404)
    expect(await hubot.page.locator('h1').textContent()).toBe('Lease not found')
    // The browser logs the page's own 404; nothing else went wrong.
    expect(hubot.problems.errors.splice(0)).toEqual([expect.stringContaining('404')])
    await checkPage(hubot)

    await octo.page.goto(`${portal}/portal/leases/${leaseId}/share`)
    await checkPage(octo)
    await octo.page.getByLabel('User (email)').fill('hubot@example.com')
    await octo.page.getByRole('button', { name: 'Add' }).click()
    await octo.page.waitForLoadState()
    await expect.poll(() => octo.page.locator('main').textContent()).toContain('hubot@example.com')
    await checkPage(octo)
    await screenshot(octo.page, 'share')

    const after = await hubot.page.goto(`${portal}/portal/leases/${leaseId}`)
    expect(after?.status()).toBe(200)
    await hubot.page.goto(`${portal}/portal`)
    expect(await hubot.page.locator(`a[href="/portal/leases/${leaseId}"]`).count()).toBe(1)
    await checkPage(hubot)
  })

  it('streams a running run live, in order, with nothing lost or repeated across a cut connection', async () => {
    const go = join(rig.host.home, `portal-go-${process.pid}`)
    rmSync(go, { force: true })
    const run = collectOutput(
      spawnCli(['run', '--id', leaseId, '--no-sync', '--', 'sh', '-c', printer(go)], { home: rig.home, env: cliEnv(octo) }),
    )
    try {
      runId = await until('the run to be recorded', () => /recording run (run_[0-9a-f]+)/.exec(run.stderr())?.[1])
      const page = octo.page
      await page.goto(`${portal}/portal/runs/${runId}`)
      const live = page.locator('#run-live')
      await until('the socket to open', async () => (await live.getAttribute('data-socket')) === 'open')
      await until('line 10 on the page', async () => (await page.textContent('#run-log'))?.includes('line 10\n'))
      // Where the log box and what follows it are: arriving lines must not move them.
      const layout = () =>
        page.evaluate(() => {
          const box = (id: string) => (globalThis as any).document.getElementById(id).getBoundingClientRect()
          return { logHeight: box('run-log').height, eventsTop: box('events-title').top + (globalThis as any).scrollY }
        })
      const before = await layout()
      await screenshot(page, 'run-live')
      // Cut every connection through the proxy (the page's socket among them), then let the run go on.
      proxy.cut()
      writeFileSync(go, '')
      // And once more while the second half streams (or, on a slow machine, after it ended: then it only checks the finish).
      await until('line 30 on the page', async () => (await page.textContent('#run-log'))?.includes('line 30\n'), 90_000)
      proxy.cut()
      await until('the run to finish on the page', async () => (await live.getAttribute('data-state')) === 'succeeded', 90_000)
      expect(await run.done).toBe(0)
      expect(await page.textContent('#run-log')).toBe(expectedOutput)
      expect(await layout()).toEqual(before)
      expect(Number(await live.getAttribute('data-connections'))).toBeGreaterThanOrEqual(2)
      expect(await page.textContent('#run-state')).toBe('succeeded')
      expect(await page.textContent('#run-live-status')).toContain('exit code 0')
      await checkPage(octo)
      await screenshot(page, 'run')
      // What the page showed is what the broker recorded.
      const { events } = await fetch(`${rig.broker.url}/v1/runs/${runId}/events?after=0&limit=500`, {
        headers: { authorization: `Bearer ${octo.token}` },
      }).then((r) => r.json() as Promise<{ events: { type: string; data: string }[] }>)
      const recorded = events.filter((e) => e.type === 'stdout').map((e) => e.data)
      expect(recorded.join('')).toBe(expectedOutput)
    } finally {
      writeFileSync(go, '')
      await run.done
      rmSync(go, { force: true })
    }
  })

  it('refuses the control socket to a page of another origin on the same host, though the browser sends the cookie', async () => {
    // Another port of 127.0.0.1 is the same site, so the browser does send the cookie: only the Origin check stops it.
    const other = createServer((_, response) => response.end('<!doctype html><html lang="en"><title>elsewhere</title></html>'))
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
    const page = await octo.context.newPage()
    const tryControl = () =>
      page.evaluate(
        (url) =>
          new Promise<string>((resolve) => {
            const ws = new (globalThis as any).WebSocket(url)
            ws.onopen = () => {
              ws.close()
              resolve('open')
            }
            ws.onclose = () => resolve('refused')
          }),
        `${portal.replace(/^http/, 'ws')}/v1/control`,
      )
    try {
      await page.goto(`http://127.0.0.1:${(other.address() as { port: number }).port}/`)
      expect(await tryControl()).toBe('refused')
      expect(octo.problems.errors.splice(0)).toEqual([expect.stringContaining('403')])
      // The same page script from the portal's own origin gets the socket.
      await page.goto(`${portal}/portal/usage`)
      expect(await tryControl()).toBe('open')
      expect(octo.problems.errors).toEqual([])
    } finally {
      await page.close()
      await new Promise((resolve) => other.close(resolve))
    }
  })

  it('stops the lease from its page, and `crabbox status` agrees', async () => {
    await octo.page.goto(`${portal}/portal/leases/${leaseId}`)
    await octo.page.getByRole('button', { name: 'Stop lease and delete its machine' }).click()
    await octo.page.waitForURL(`${portal}/portal`)
    await checkPage(octo)
    const status = await runCli(['status', leaseId, '--json'], { home: rig.home, env: cliEnv(octo) })
    expect(JSON.parse(status.stdout)).toMatchObject({ id: leaseId, state: 'released' })
  })

  it('shows usage, the grid in dark mode, the pages on a phone, and signs out', async () => {
    await octo.page.goto(`${portal}/portal/usage`)
    expect(await octo.page.locator('h1').textContent()).toBe('Usage')
    await checkPage(octo)
    await screenshot(octo.page, 'usage')

    const dark = await signIn(browser, portal, github, 'octo', { colorScheme: 'dark' })
    try {
      await dark.page.goto(`${portal}/portal?state=all`)
      await checkPage(dark)
      await screenshot(dark.page, 'leases-dark')
    } finally {
      await dark.context.close()
    }

    const phone = await signIn(browser, portal, github, 'octo', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })
    try {
      for (const path of ['/portal?state=all', `/portal/leases/${leaseId}`, `/portal/runs/${runId}`, '/portal/usage']) {
        await phone.page.goto(`${portal}${path}`)
        await checkPage(phone)
        expect(await overflowsSideways(phone.page), `${path} wider than a phone`).toBe(false)
      }
      await phone.page.getByRole('button', { name: 'Sign out' }).click()
      await phone.page.waitForURL(`${portal}/portal/logout`)
      expect(await phone.page.locator('h1').textContent()).toBe('Signed out')
      await checkPage(phone)
      expect((await phone.context.cookies(portal)).find((cookie) => cookie.name === 'crabbox_session')).toBeUndefined()
    } finally {
      await phone.context.close()
    }
  })
})
