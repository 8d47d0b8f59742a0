import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core'

/**
 * Real Chromium for the portal's browser tests: Debian's `chromium` package (`.ci/run`
 * installs it when missing), driven over playwright-core. No browser is ever downloaded:
 * playwright-core only launches the executable found here.
 */

/** Where Debian's package puts the browser binary, then its launcher script. */
const CANDIDATES = ['/usr/lib/chromium/chromium', '/usr/bin/chromium', '/usr/bin/chromium-browser']

/** The Chromium to launch: `CRABBOX_CHROMIUM`, else Debian's package; undefined when there is none. */
export function chromiumPath(): string | undefined {
  const configured = process.env.CRABBOX_CHROMIUM
  if (configured) return configured
  return CANDIDATES.find((path) => existsSync(path))
}

/** Headless Chromium. As root (CI containers) the sandbox cannot start, so it is turned off there only. */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = chromiumPath()
  if (!executablePath) throw new Error('no Chromium found: install Debian\'s "chromium" package (.ci/run does) or set CRABBOX_CHROMIUM')
  const args = ['--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--no-default-browser-check']
  if (process.getuid?.() === 0) args.push('--no-sandbox')
  return chromium.launch({ executablePath, headless: true, args, timeout: 60_000 })
}

/** Page troubles a test should fail on: uncaught errors, console errors and CSP violations. */
export interface PageProblems {
  errors: string[]
  /** `violatedDirective blockedURI` of every Content-Security-Policy violation the page reported. */
  csp: string[]
}

/**
 * Listens to `securitypolicyviolation` before any page script runs. Init scripts come in
 * through the DevTools protocol, so the page's own CSP does not block this one.
 */
const CSP_LISTENER = `(() => {
  window.__cspViolations = []
  document.addEventListener('securitypolicyviolation', (event) => {
    window.__cspViolations.push(event.violatedDirective + ' ' + (event.blockedURI || 'inline'))
  })
})()`

/** A fresh context (its own cookies) whose pages report their problems into the returned list. */
export async function newContext(
  browser: Browser,
  options: BrowserContextOptions = {},
): Promise<{ context: BrowserContext; problems: PageProblems; cspOf(page: Page): Promise<string[]> }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options })
  await context.addInitScript({ content: CSP_LISTENER })
  const problems: PageProblems = { errors: [], csp: [] }
  context.on('page', (page) => watchPage(page, problems))
  return {
    context,
    problems,
    async cspOf(page) {
      const found = await page.evaluate(() => (globalThis as { __cspViolations?: string[] }).__cspViolations ?? [])
      problems.csp.push(...found.filter((entry) => !problems.csp.includes(entry)))
      return found
    },
  }
}

function watchPage(page: Page, problems: PageProblems): void {
  page.on('pageerror', (error) => problems.errors.push(`pageerror: ${error.message}`))
  page.on('console', (message) => {
    // The browser asks every origin for /favicon.ico by itself; its 404 is no page's doing.
    if (message.type() === 'error' && !message.location().url.endsWith('/favicon.ico')) problems.errors.push(`console: ${message.text()}`)
  })
}

let axeSource: string | undefined

/** One axe-core rule violation, reduced to what a failing test should print. */
export interface AxeViolation {
  id: string
  impact: string
  help: string
  nodes: string[]
}

/**
 * Runs axe-core in `page` and returns the serious and critical violations (empty = pass).
 * The library is evaluated through the DevTools protocol, not as a `<script>` tag: the page's
 * nonce-based CSP would (rightly) refuse an injected tag.
 */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
  const loaded = await page.evaluate(() => typeof (globalThis as { axe?: unknown }).axe === 'object')
  if (!loaded) await page.evaluate(axeSource)
  const violations = await page.evaluate(async () => {
    type AxeResult = { violations: { id: string; impact?: string | null; help: string; nodes: { target: unknown[] }[] }[] }
    // Runs in the page: the test's tsconfig has no DOM types, so the globals are typed by hand.
    const page = globalThis as unknown as { axe: { run(context: unknown, options: object): Promise<AxeResult> }; document: unknown }
    const result = await page.axe.run(page.document, { resultTypes: ['violations'] })
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact ?? 'unknown',
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((node) => node.target.map(String).join(' ')),
    }))
  })
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
}
