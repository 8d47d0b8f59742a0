import { SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import * as v from 'valibot'
import { RunEventRequest } from '../../src/protocol/runs.js'
import { appendRunEvent } from '../../worker/fleet/runs.js'
import { safeReturnTo } from '../../worker/portal/session.js'
import { adminCaller, api, createLease, inFleet, userToken, type Who } from './broker-support.js'
import { browserFor, getPage, ORIGIN, postForm, type Browser, type Caller } from './portal-support.js'

/**
 * The portal's pages against every kind of caller, as the API's auth matrix does for
 * /v1: a fresh lease per cell, owned by a GitHub user, shared by name with one user and
 * with the owner's org for use, plus a run of the owner on it (runs are never shared).
 */

const unique = () => crypto.randomUUID().slice(0, 8)

interface Cast {
  owner: Browser
  ownerApi: Who
  callers: Record<string, Caller>
}

async function cast(): Promise<Cast> {
  const id = unique()
  const owner = await browserFor(`owner-${id}@example.com`, 'portalorg')
  return {
    owner,
    ownerApi: { kind: 'user', token: owner.token },
    callers: {
      'no credential': undefined,
      stranger: await browserFor(`stranger-${id}@example.com`, 'elsewhere'),
      owner,
      'shared user': await browserFor(`sharee-${id}@example.com`, 'elsewhere'),
      'org member': await browserFor(`member-${id}@example.com`, 'portalorg'),
      admin: adminCaller,
    },
  }
}

async function leaseAndRun(c: Cast): Promise<{ lease: any; run: any }> {
  const lease = await createLease(c.ownerApi)
  const sharee = (c.callers['shared user'] as Browser).owner
  const shared = await api(c.ownerApi, 'PUT', `/v1/leases/${lease.id}/share`, { users: { [sharee]: 'use' }, org: 'use' })
  expect(shared.status).toBe(200)
  const run = (await api(c.ownerApi, 'POST', '/v1/runs', { leaseID: lease.id, command: ['npm', 'test'] })).body.run
  return { lease, run }
}

const LOGIN = 302
const page = (statuses: Partial<Record<string, number>>) => ({ 'no credential': LOGIN, ...statuses })
const member = page({ stranger: 404, owner: 200, 'shared user': 200, 'org member': 200, admin: 200 })
const manager = page({ stranger: 404, owner: 200, 'shared user': 403, 'org member': 403, admin: 200 })
const runOwner = page({ stranger: 404, owner: 200, 'shared user': 404, 'org member': 404, admin: 200 })
const everyone = page({ stranger: 200, owner: 200, 'shared user': 200, 'org member': 200, admin: 200 })

type Cell = { lease: any; run: any; caller: Caller }
const pages: { name: string; go: (cell: Cell) => Promise<{ status: number; text: string }>; expect: Record<string, number> }[] = [
  { name: 'lease page', go: ({ lease, caller }) => getPage(caller, `/portal/leases/${lease.id}`), expect: member },
  { name: 'share page', go: ({ lease, caller }) => getPage(caller, `/portal/leases/${lease.id}/share`), expect: manager },
  {
    name: 'share form',
    go: ({ lease, caller }) =>
      postForm(caller, `/portal/leases/${lease.id}/share`, {
        action: 'add-user',
        user: 'someone@example.com',
        role: 'use',
        csrf: caller && 'csrf' in caller ? caller.csrf : '',
      }),
    expect: { ...manager, 'no credential': 401, owner: 303, admin: 303 },
  },
  {
    name: 'stop form',
    go: ({ lease, caller }) =>
      postForm(caller, `/portal/leases/${lease.id}/release`, { csrf: caller && 'csrf' in caller ? caller.csrf : '' }),
    expect: { ...manager, 'no credential': 401, owner: 303, admin: 303 },
  },
  { name: 'run page', go: ({ run, caller }) => getPage(caller, `/portal/runs/${run.id}`), expect: runOwner },
  { name: 'run log', go: ({ run, caller }) => getPage(caller, `/portal/runs/${run.id}/logs`), expect: runOwner },
  { name: 'run events', go: ({ run, caller }) => getPage(caller, `/portal/runs/${run.id}/events`), expect: runOwner },
  { name: 'usage', go: ({ caller }) => getPage(caller, '/portal/usage'), expect: everyone },
]

describe('portal page matrix', () => {
  for (const route of pages) {
    it(route.name, async () => {
      const c = await cast()
      for (const [name, caller] of Object.entries(c.callers)) {
        const { lease, run } = await leaseAndRun(c)
        const result = await route.go({ lease, run, caller })
        expect({ caller: name, status: result.status }).toEqual({ caller: name, status: route.expect[name] })
        // Not visible looks exactly like missing: the same panel.
        if (result.status === 404 && route.name.startsWith('lease')) expect(result.text).toContain('Lease not found')
        if (result.status === 404 && route.name === 'run page') expect(result.text).toContain('Run not found')
        await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
        await api(c.ownerApi, 'POST', `/v1/runs/${run.id}/finish`, { exitCode: 0 })
      }
    })
  }

  it('the lease grid lists a lease for exactly the callers who may see it', async () => {
    const c = await cast()
    const { lease, run } = await leaseAndRun(c)
    const seen: Record<string, boolean | number> = {}
    for (const [name, caller] of Object.entries(c.callers)) {
      const grid = await getPage(caller, `/portal?q=${lease.id}`)
      // The search box echoes the query: look for the row's link.
      seen[name] = grid.status === 200 ? grid.text.includes(`href="/portal/leases/${lease.id}"`) : grid.status
    }
    expect(seen).toEqual({ 'no credential': LOGIN, stranger: false, owner: true, 'shared user': true, 'org member': true, admin: true })
    await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
    await api(c.ownerApi, 'POST', `/v1/runs/${run.id}/finish`, { exitCode: 0 })
  })

  it('a stop from the page releases the lease, as the API would', async () => {
    const c = await cast()
    const { lease } = await leaseAndRun(c)
    const stop = await postForm(c.owner, `/portal/leases/${lease.id}/release`, { csrf: c.owner.csrf })
    expect(stop.status).toBe(303)
    expect(stop.headers.get('location')).toBe('/portal')
    expect((await api(c.ownerApi, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('released')
  })

  it('share form actions change sharing through the API rules', async () => {
    const c = await cast()
    const { lease } = await leaseAndRun(c)
    const post = (fields: Record<string, string>) =>
      postForm(c.owner, `/portal/leases/${lease.id}/share`, { ...fields, csrf: c.owner.csrf })
    expect((await post({ action: 'add-user', user: 'New@Example.com', role: 'manage' })).status).toBe(303)
    let share = (await api(c.ownerApi, 'GET', `/v1/leases/${lease.id}/share`)).body.share
    expect(share.users['new@example.com']).toBe('manage')
    expect(share.org).toBe('use')
    expect((await post({ action: 'set-org', role: '' })).status).toBe(303)
    expect((await post({ action: 'remove-user', user: 'new@example.com' })).status).toBe(303)
    share = (await api(c.ownerApi, 'GET', `/v1/leases/${lease.id}/share`)).body.share
    expect(share.org).toBeUndefined()
    expect(share.users['new@example.com']).toBeUndefined()
    expect((await post({ action: 'clear' })).status).toBe(303)
    expect((await api(c.ownerApi, 'GET', `/v1/leases/${lease.id}/share`)).body.share).toEqual({ users: {} })
    const page = await getPage(c.owner, `/portal/leases/${lease.id}/share?embed=1`)
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'self'")
    await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
  })
})

describe('portal sign-in and redirects', () => {
  it('/ goes to /portal; a signed-out page goes to login with its path; the API still answers 401 JSON', async () => {
    const root = await getPage(undefined, '/')
    expect(root.status).toBe(302)
    expect(root.headers.get('location')).toBe('/portal')
    const grid = await getPage(undefined, '/portal/leases/cbx_000000000001?runs=failed')
    expect(grid.status).toBe(302)
    expect(grid.headers.get('location')).toBe(`/portal/login?returnTo=${encodeURIComponent('/portal/leases/cbx_000000000001?runs=failed')}`)
    const browser = await browserFor(`api-${unique()}@example.com`)
    const v1 = await SELF.fetch(`${ORIGIN}/v1/leases`, { headers: { cookie: browser.cookie } })
    expect(v1.status).toBe(401)
    expect(await v1.json()).toMatchObject({ error: 'unauthorized' })
  })

  it('a bearer token opens pages too; a bad one is not rescued by a cookie', async () => {
    const owner = `bearer-${unique()}@example.com`
    const token = await userToken({ owner, org: 'openclaw', login: 'bearer' })
    expect((await getPage({ kind: 'user', token }, '/portal')).status).toBe(200)
    expect((await getPage(adminCaller, '/portal?scope=system')).status).toBe(200)
    const browser = await browserFor(owner)
    const bad = await getPage(undefined, '/portal', { authorization: 'Bearer nope', cookie: browser.cookie })
    expect(bad.status).toBe(302)
  })

  it('only a user token counts in the session cookie, never the admin or shared token', async () => {
    for (const secret of ['test-admin-token', 'test-shared-token', 'garbage']) {
      const result = await getPage(undefined, '/portal', { cookie: `crabbox_session=${secret}` })
      expect(result.status).toBe(LOGIN)
    }
  })

  it('redirects pages on another origin to CRABBOX_PUBLIC_URL', async () => {
    const response = await SELF.fetch('https://elsewhere.test/portal/usage?month=2026-05', { redirect: 'manual' })
    expect(response.status).toBe(302)
    expect(response.headers.get('location')).toBe('https://broker.test/portal/usage?month=2026-05')
  })

  it('keeps returnTo only for portal paths', () => {
    expect(safeReturnTo('/portal/leases/cbx_000000000001?runs=all')).toBe('/portal/leases/cbx_000000000001?runs=all')
    expect(safeReturnTo('/portal')).toBe('/portal')
    for (const bad of [
      'https://evil.example/portal',
      '//evil.example/portal',
      '/\\evil.example',
      '/portalx',
      '/portal/../v1/leases',
      '/v1/leases',
      'javascript:alert(1)',
      '/portal/\nx',
      '',
      undefined,
    ])
      expect(safeReturnTo(bad)).toBe('/portal')
  })

  it('a signed-in visit to login goes straight to a safe returnTo', async () => {
    const browser = await browserFor(`again-${unique()}@example.com`)
    const safe = await getPage(browser, `/portal/login?returnTo=${encodeURIComponent('/portal/usage')}`)
    expect(safe.headers.get('location')).toBe('/portal/usage')
    const evil = await getPage(browser, `/portal/login?returnTo=${encodeURIComponent('//evil.example/x')}`)
    expect(evil.headers.get('location')).toBe('/portal')
  })

  it('login sends the browser to GitHub with a binding cookie for the callback only', async () => {
    const login = await getPage(undefined, `/portal/login?returnTo=${encodeURIComponent('https://evil.example')}`)
    expect(login.status).toBe(302)
    expect(login.headers.get('location')).toMatch(/^https:\/\/github\.test\/login\/oauth\/authorize\?/)
    expect(login.headers.get('set-cookie')).toMatch(
      /^crabbox_login=[0-9a-f]{32}; Max-Age=300; Path=\/v1\/auth\/github\/callback; HttpOnly; Secure; SameSite=Lax$/,
    )
    expect(login.headers.get('cache-control')).toBe('no-store')
  })

  it('sign-out is a same-origin form with the CSRF token, and clears the cookie', async () => {
    const browser = await browserFor(`logout-${unique()}@example.com`)
    const form = await getPage(browser, '/portal/logout')
    expect(form.text).toContain(`value="${browser.csrf}"`)
    expect((await postForm(browser, '/portal/logout', { csrf: 'wrong' })).status).toBe(403)
    expect((await postForm(browser, '/portal/logout', { csrf: browser.csrf }, { origin: 'https://evil.example' })).status).toBe(403)
    const out = await postForm(browser, '/portal/logout', { csrf: browser.csrf })
    expect(out.status).toBe(200)
    expect(out.headers.get('set-cookie')).toBe('crabbox_session=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0')
  })
})

describe('portal security', () => {
  it('every page has a nonce CSP, and every script and style carries the nonce', async () => {
    const c = await cast()
    const { lease, run } = await leaseAndRun(c)
    for (const path of [
      '/portal',
      '/portal/usage',
      `/portal/leases/${lease.id}`,
      `/portal/leases/${lease.id}/share`,
      `/portal/runs/${run.id}`,
      '/portal/leases/cbx_000000000000',
    ]) {
      const result = await getPage(c.owner, path)
      const csp = result.headers.get('content-security-policy') ?? ''
      expect(csp, path).toContain("default-src 'none'")
      expect(csp, path).toContain("form-action 'self'")
      expect(csp, path).toContain("frame-ancestors 'none'")
      const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)?.[1]
      expect(nonce, path).toBeTruthy()
      const tags = [...result.text.matchAll(/<(script|style)\b[^>]*>/g)].map((m) => m[0])
      expect(tags.length, path).toBeGreaterThan(0)
      for (const tag of tags) expect(tag, path).toContain(`nonce="${nonce}"`)
      expect(result.text, path).not.toMatch(/\son[a-z]+=/i)
      expect(result.headers.get('content-type')).toBe('text/html; charset=UTF-8')
      expect(result.headers.get('cache-control')).toBe('no-store')
    }
    const again = await getPage(c.owner, '/portal')
    expect(again.headers.get('content-security-policy')).not.toBe(
      (await getPage(c.owner, '/portal')).headers.get('content-security-policy'),
    )
    await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
  })

  it('refuses state changes from another site or without the session token', async () => {
    const c = await cast()
    const { lease } = await leaseAndRun(c)
    const stop = (fields: Record<string, string>, headers: Record<string, string> = {}) =>
      postForm(c.owner, `/portal/leases/${lease.id}/release`, fields, headers)
    const refused = [
      await stop({}),
      await stop({ csrf: 'forged' }),
      await stop({ csrf: (c.callers.stranger as Browser).csrf }),
      await stop({ csrf: c.owner.csrf }, { origin: 'https://evil.example' }),
      await stop({ csrf: c.owner.csrf }, { origin: 'null' }),
    ]
    for (const result of refused) expect(result.status).toBe(403)
    // Without Origin, the browser's Sec-Fetch-Site decides.
    const noOrigin = async (site: string) =>
      (
        await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/release`, {
          method: 'POST',
          headers: { cookie: c.owner.cookie, 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': site },
          body: `csrf=${encodeURIComponent(c.owner.csrf)}`,
          redirect: 'manual',
        })
      ).status
    expect(await noOrigin('cross-site')).toBe(403)
    expect((await api(c.ownerApi, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('active')
    expect(await noOrigin('same-origin')).toBe(303)
    expect((await api(c.ownerApi, 'GET', `/v1/leases/${lease.id}`)).body.lease.state).toBe('released')
  })

  it('the portal headers cannot be forged by a caller', async () => {
    const c = await cast()
    const { lease } = await leaseAndRun(c)
    const forged = await postForm(
      c.owner,
      `/portal/leases/${lease.id}/release`,
      { csrf: 'x' },
      { 'x-crabbox-portal-auth': 'bearer', 'x-crabbox-portal-csrf': 'x' },
    )
    expect(forged.status).toBe(403)
    await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
  })

  it('shows <script> in a command, a log line and an owner name as text', async () => {
    const owner = `<script>alert("owner")</script>-${unique()}@example.com`
    const browser = await browserFor(owner)
    const who: Who = { kind: 'user', token: browser.token }
    const lease = await createLease(who)
    const evil = '<script>alert(1)</script>'
    const run = (await api(who, 'POST', '/v1/runs', { leaseID: lease.id, command: ['echo', evil] })).body.run
    await api(who, 'POST', `/v1/runs/${run.id}/events`, { type: 'stdout', stream: 'stdout', data: `${evil}\n`, message: evil })
    const running = await getPage(browser, `/portal/runs/${run.id}`)
    await api(who, 'POST', `/v1/runs/${run.id}/finish`, { exitCode: 1, log: `line </pre>${evil}\n` })
    const finished = await getPage(browser, `/portal/runs/${run.id}`)
    const grid = await getPage(adminCaller, `/portal?q=${encodeURIComponent(lease.id)}`)
    for (const result of [running, finished, grid]) {
      expect(result.status).toBe(200)
      expect(result.text).not.toContain('<script>alert')
      expect(result.text).not.toContain('</pre><script>')
    }
    expect(running.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;')
    expect(finished.text).toContain('&lt;/pre&gt;&lt;script&gt;alert(1)')
    expect(grid.text).toContain('&lt;script&gt;alert(&quot;owner&quot;)')
    const log = await getPage(browser, `/portal/runs/${run.id}/logs`)
    expect(log.headers.get('content-type')).toBe('text/plain; charset=utf-8')
    await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
  })

  it('errors are panels with the API meaning: 404 not found, 403 manage required, 409 unavailable', async () => {
    const c = await cast()
    const { lease } = await leaseAndRun(c)
    const missing = await getPage(c.owner, '/portal/leases/cbx_000000000000')
    expect(missing.status).toBe(404)
    expect(missing.text).toContain('Lease not found')
    expect(missing.text).toContain('role="alert"')
    const sharee = c.callers['shared user'] as Browser
    const share = await getPage(sharee, `/portal/leases/${lease.id}/share`)
    expect(share.status).toBe(403)
    expect(share.text).toContain('Share unavailable')
    const stop = await postForm(sharee, `/portal/leases/${lease.id}/release`, { csrf: sharee.csrf })
    expect(stop.status).toBe(403)
    expect(stop.text).toContain('Stop unavailable')
    // Two owners' live leases with one slug: an admin naming the slug gets 409, as on the API.
    const slug = `dup-${unique()}`
    const other = await browserFor(`dup-${unique()}@example.com`)
    const a = await createLease(c.ownerApi, { slug })
    const b = await createLease({ kind: 'user', token: other.token }, { slug })
    const api409 = await api(adminCaller, 'GET', `/v1/leases/${slug}`)
    const ambiguous = await getPage(adminCaller, `/portal/leases/${slug}`)
    expect(ambiguous.status).toBe(api409.status)
    expect(ambiguous.status).toBe(409)
    expect(ambiguous.text).toContain('Lease unavailable')
    const runMissing = await getPage(c.owner, '/portal/runs/run_000000000000')
    expect(runMissing.status).toBe(404)
    expect(runMissing.text).toContain('Run not found')
    for (const id of [lease.id, a.id, b.id]) await api(adminCaller, 'POST', `/v1/admin/leases/${id}/delete`)
  })
})

describe('the lease grid', () => {
  it('searches, filters, sorts and pages in the query', async () => {
    const id = unique()
    const browser = await browserFor(`grid-${id}@example.com`)
    const who: Who = { kind: 'user', token: browser.token }
    const leases = [
      await createLease(who, { slug: `b-${id}` }),
      await createLease(who, { slug: `a-${id}` }),
      await createLease(who, { slug: `c-${id}` }),
    ]
    await api(who, 'POST', `/v1/leases/${leases[2].id}/release`, {})
    const order = (text: string) => leases.map((l) => ({ slug: l.slug, at: text.indexOf(`href="/portal/leases/${l.id}"`) }))
    const active = await getPage(browser, `/portal?q=${id}&sort=slug&dir=asc`)
    const rows = order(active.text)
    expect(rows.find((r) => r.slug === `c-${id}`)!.at).toBe(-1)
    expect(rows.find((r) => r.slug === `a-${id}`)!.at).toBeLessThan(rows.find((r) => r.slug === `b-${id}`)!.at)
    expect(active.text).toContain('aria-sort="ascending"')
    const all = order((await getPage(browser, `/portal?q=${id}&state=all&sort=slug&dir=desc`)).text)
    expect(all.map((r) => r.at > 0)).toEqual([true, true, true])
    expect(all.find((r) => r.slug === `c-${id}`)!.at).toBeLessThan(all.find((r) => r.slug === `a-${id}`)!.at)
    const ended = (await getPage(browser, `/portal?q=${id}&state=ended`)).text
    expect(ended).toContain(`href="/portal/leases/${leases[2].id}"`)
    expect(ended).not.toContain(`href="/portal/leases/${leases[0].id}"`)
    const none = (await getPage(browser, `/portal?q=${id}&provider=aws`)).text
    expect(none).toContain('No leases match')
    const past = (await getPage(browser, `/portal?q=${id}&page=5`)).text
    expect(past).toContain('No leases match')
    expect(past).toContain('Previous page')
    // Odd parameters fall back instead of failing.
    expect((await getPage(browser, '/portal?sort=drop%20table&dir=sideways&page=-3&state=%3Cx%3E')).status).toBe(200)
    for (const lease of leases) await api(adminCaller, 'POST', `/v1/admin/leases/${lease.id}/delete`)
  })
})

describe('the run page', () => {
  it("shows a running run's latest output and where live updates continue", async () => {
    const browser = await browserFor(`tail-${unique()}@example.com`)
    const who: Who = { kind: 'user', token: browser.token }
    const run = (await api(who, 'POST', '/v1/runs', { command: ['make'] })).body.run
    const owner = { owner: browser.owner, org: 'openclaw', admin: false, claimed: false }
    // Appended inside the object: 250 requests take long on a loaded machine.
    await inFleet((deps) => {
      for (let i = 0; i < 250; i++)
        appendRunEvent(deps.storage, owner, run.id, v.parse(RunEventRequest, { type: 'stdout', stream: 'stdout', data: `line ${i}\n` }))
    })
    const page = await getPage(browser, `/portal/runs/${run.id}`)
    expect(page.text).toContain(`data-run-id="${run.id}"`)
    expect(page.text).toContain('data-state="running"')
    expect(page.text).toContain('data-after-seq="251"')
    const log = /<pre id="run-log"[^>]*>([\s\S]*?)<\/pre>/.exec(page.text)![1]!
    expect(log).toContain('line 249\n')
    expect(log).not.toContain('line 3\n')
    const events = await getPage(browser, `/portal/runs/${run.id}/events?after=250`)
    expect(JSON.parse(events.text).events.map((e: { seq: number }) => e.seq)).toEqual([251])
    await api(who, 'POST', `/v1/runs/${run.id}/finish`, { exitCode: 0, log: 'done\n' })
    const finished = await getPage(browser, `/portal/runs/${run.id}`)
    expect(finished.text).toContain('data-state="succeeded"')
    expect(/<pre id="run-log"[^>]*>([\s\S]*?)<\/pre>/.exec(finished.text)![1]).toBe('done\n')
  })
})
