import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core'
import { expect } from 'vitest'
import { axeViolations, newContext, type PageProblems } from './browser.js'
import { repoRoot } from './cli.js'
import type { FakeGithub } from './fake-github.js'

/**
 * The portal as a person uses it: a browser context signed in through GitHub (the fake),
 * pages checked for accessibility and CSP, and screenshots for docs/portal.md.
 */

export interface PortalUser {
  context: BrowserContext
  page: Page
  problems: PageProblems
  /** The signed `cbxu_` user token in the session cookie: the same identity as a bearer token. */
  token: string
  cspOf(page: Page): Promise<string[]>
}

/**
 * Signs `login` in: opens `/portal` signed out, which goes to `/portal/login`, GitHub (the
 * fake approves as `login`) and back to `/portal` with the session cookie.
 */
export async function signIn(
  browser: Browser,
  portal: string,
  github: FakeGithub,
  login: string,
  options: BrowserContextOptions = {},
): Promise<PortalUser> {
  const { context, problems, cspOf } = await newContext(browser, options)
  const page = await context.newPage()
  github.approveAs(login)
  await page.goto(`${portal}/portal`)
  expect(new URL(page.url()).pathname).toBe('/portal')
  const session = (await context.cookies(portal)).find((cookie) => cookie.name === 'crabbox_session')
  expect(session, 'the session cookie').toBeDefined()
  expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax' })
  return { context, page, problems, cspOf, token: decodeURIComponent(session!.value) }
}

/** Whether the page is wider than its window (a phone would have to scroll sideways). */
export const overflowsSideways = (page: Page): Promise<boolean> =>
  page.evaluate(() => {
    const g = globalThis as unknown as { document: { documentElement: { scrollWidth: number } }; innerWidth: number }
    return g.document.documentElement.scrollWidth > g.innerWidth
  })

/** Screenshots go into docs/images/portal only when asked (CRABBOX_PORTAL_SCREENSHOTS=1): tests never write the checkout otherwise. */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env.CRABBOX_PORTAL_SCREENSHOTS !== '1') return
  const dir = join(repoRoot, 'docs', 'images', 'portal')
  mkdirSync(dir, { recursive: true })
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true })
}

/** The page as it is now: no serious or critical axe-core violation, no CSP violation, no script error. */
export async function checkPage(user: PortalUser, page: Page = user.page): Promise<void> {
  expect(await axeViolations(page), `axe-core on ${page.url()}`).toEqual([])
  expect(await user.cspOf(page), `CSP violations on ${page.url()}`).toEqual([])
  expect(user.problems.errors, `script errors on ${page.url()}`).toEqual([])
}
