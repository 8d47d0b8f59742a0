import { createServer, type Server } from 'node:http'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { axeViolations, launchBrowser, newContext } from '../support/browser.js'

/**
 * The browser harness itself: Debian's Chromium starts headless, axe-core finds a known
 * violation and passes a clean page, and a page's CSP violations are seen even though the
 * page's own policy governs its scripts.
 */

const PAGES: Record<string, string> = {
  '/clean': `<!doctype html><html lang="en"><head><title>clean</title></head><body><main><h1>Clean</h1>
    <p id="out">waiting</p><script nonce="n0nce">document.getElementById('out').textContent = 'nonce ran'</script>
    <script>document.getElementById('out').textContent = 'inline ran'</script></main></body></html>`,
  '/broken': `<!doctype html><html><head><title>broken</title></head><body><img src="/x.png"><input type="text"></body></html>`,
}

let server: Server
let origin: string
let browser: Browser

beforeAll(async () => {
  server = createServer((request, response) => {
    const page = PAGES[request.url ?? '']
    if (!page) return response.writeHead(404).end()
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "script-src 'nonce-n0nce'" })
    response.end(page)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  browser = await launchBrowser()
})

afterAll(async () => {
  await browser?.close()
  await new Promise((resolve) => server?.close(resolve))
})

describe('browser harness', () => {
  it('runs the nonce script, reports the inline one as a CSP violation, and axe passes the page', async () => {
    const { context, problems, cspOf } = await newContext(browser)
    try {
      const page = await context.newPage()
      await page.goto(`${origin}/clean`)
      expect(await page.textContent('#out')).toBe('nonce ran')
      expect(await cspOf(page)).toEqual([expect.stringMatching(/^script-src(-elem)? inline$/)])
      expect(await axeViolations(page)).toEqual([])
      expect(problems.errors.filter((e) => !e.includes('Content Security Policy'))).toEqual([])
    } finally {
      await context.close()
    }
  })

  it('axe reports serious and critical violations with their nodes', async () => {
    const { context } = await newContext(browser)
    try {
      const page = await context.newPage()
      await page.goto(`${origin}/broken`)
      const ids = (await axeViolations(page)).map((v) => v.id)
      expect(ids).toEqual(expect.arrayContaining(['image-alt', 'label', 'html-has-lang']))
    } finally {
      await context.close()
    }
  })
})
