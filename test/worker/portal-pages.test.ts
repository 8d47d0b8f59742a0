import { describe, expect, it } from 'vitest'
import { createLease, shared, userToken } from './broker-support.js'
import { browserFor, getPage } from './portal-support.js'

describe('portal pages', () => {
  it('/ redirects to /portal, and a signed-out page request to login', async () => {
    const root = await getPage(undefined, '/')
    expect(root.status).toBe(302)
    expect(root.headers.get('location')).toBe('/portal')
    const grid = await getPage(undefined, '/portal?state=all')
    expect(grid.status).toBe(302)
    expect(grid.headers.get('location')).toBe('/portal/login?returnTo=%2Fportal%3Fstate%3Dall')
  })

  it('renders the lease grid for a cookie session with a nonce CSP', async () => {
    const owner = `grid-${crypto.randomUUID()}@example.com`
    const browser = await browserFor(owner)
    const lease = await createLease({ kind: 'user', token: await userToken({ owner, org: 'openclaw', login: 'grid' }) })
    const page = await getPage(browser, '/portal')
    expect(page.status).toBe(200)
    expect(page.text).toContain(lease.id)
    const csp = page.headers.get('content-security-policy')!
    const nonce = /'nonce-([^']+)'/.exec(csp)![1]
    expect(page.text).toContain(`<script nonce="${nonce}">`)
    void shared
  })
})
