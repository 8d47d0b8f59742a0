import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/broker.js'
import { launchBrowser } from '../support/browser.js'
import { runCli, spawnCli } from '../support/cli.js'
import { createFakeGithub } from '../support/fake-github.js'
import { serveFake, type ServedFake } from '../support/fake-hetzner.js'
import { collectOutput, until } from '../support/fixtures.js'
import { checkPage, screenshot, signIn, type PortalUser } from '../support/portal.js'
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

describe('the portal in a browser', () => {
  let octo: PortalUser
  let leaseId: string

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
  })
})

// Used by the steps that follow once the lease, share, run and usage pages exist.
void [rmSync, writeFileSync, join, spawnCli, collectOutput, until]
