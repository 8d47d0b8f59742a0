import { describe, expect, it } from 'vitest'
import { createLease, type Who } from './broker-support.js'
import { browserFor, getPage } from './portal-support.js'
import { desktopLease } from './webvnc-support.js'

/** The WebVNC page and its script: who gets it, the 409 panel, the CSP nonce, the lease page's link. */
describe('the WebVNC page', () => {
  it('a desktop lease gets the page: the noVNC module under this response nonce, the bridge commands, the controls', async () => {
    const browser = await browserFor('peter@example.com')
    const owner: Who = { kind: 'user', token: browser.token }
    const lease = await desktopLease(owner)
    const page = await getPage(browser, `/portal/leases/${lease.id}/vnc`)
    expect(page.status).toBe(200)
    const nonce = /script-src 'nonce-([^']+)'/.exec(page.headers.get('content-security-policy') ?? '')?.[1]
    expect(nonce).toBeTruthy()
    expect(page.text).toContain(`<script type="module" nonce="${nonce}" src="/portal/assets/vnc-viewer.js"></script>`)
    expect(page.text).toContain(`data-base="/portal/leases/${lease.id}/vnc"`)
    for (const id of ['vnc-pill', 'vnc-take', 'vnc-fullscreen', 'vnc-screen', 'vnc-remote-clipboard', 'vnc-send-text', 'vnc-password-form'])
      expect(page.text).toContain(`id="${id}"`)
    expect(page.text).toContain(`crabbox webvnc --provider static --target linux --id ${lease.slug}`)
    expect(page.text).toContain(`crabbox webvnc reset --id ${lease.slug}`)
    // The lease page links it.
    const leasePage = await getPage(browser, `/portal/leases/${lease.id}`)
    expect(leasePage.text).toContain(`href="/portal/leases/${lease.id}/vnc"`)
  })

  it('a lease without a desktop is a 409 "WebVNC unavailable" panel, and its lease page has no link', async () => {
    const browser = await browserFor('peter@example.com')
    const lease = await createLease({ kind: 'user', token: browser.token })
    const page = await getPage(browser, `/portal/leases/${lease.id}/vnc`)
    expect(page.status).toBe(409)
    expect(page.text).toContain('WebVNC unavailable')
    expect(page.text).toContain('lease was not created with desktop=true')
    expect((await getPage(browser, `/portal/leases/${lease.id}`)).text).not.toContain(`/portal/leases/${lease.id}/vnc`)
  })

  it('someone who cannot see the lease gets 404, as for the lease page', async () => {
    const lease = await desktopLease({ kind: 'user', token: (await browserFor('peter@example.com')).token })
    const page = await getPage(await browserFor('mallory@example.com', 'elsewhere'), `/portal/leases/${lease.id}/vnc`)
    expect(page.status).toBe(404)
    expect(page.text).toContain('Lease not found')
  })

  it('serves the bundled client as JavaScript to a signed-in browser only', async () => {
    const script = await getPage(await browserFor('peter@example.com'), '/portal/assets/vnc-viewer.js')
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    // noVNC's RFB client is in it (its API and licence line), with the page's own code.
    expect(script.text).toContain('clipboardPasteFrom')
    expect(script.text).toMatch(/^\/\*! The Crabbox WebVNC page with noVNC \(@novnc\/novnc [0-9.]+, MPL-2.0;/)
    expect(script.text).toContain('vnc-remote-clipboard')
    expect((await getPage(undefined, '/portal/assets/vnc-viewer.js')).status).not.toBe(200)
  })
})
