/**
 * A fake GitHub for the OAuth web flow and the few REST calls the broker makes at login:
 * authorize (auto-approves as a chosen user, or denies), code → token exchange, `/user`,
 * `/user/emails`, `/user/memberships/orgs/{org}`, `/user/teams` (paged). Wire shapes follow
 * GitHub's documentation (token errors come back as HTTP 200 with an `error` field).
 *
 * A plain `(Request) => Promise<Response>` handler: stub `fetch` with it inside workerd, or
 * serve it on loopback with `serveFake` (test/support/fake-hetzner.ts) for e2e. Point the
 * broker's CRABBOX_GITHUB_URL and CRABBOX_GITHUB_API_URL at it (one server answers both).
 */

export interface FakeGithubUser {
  login: string
  name?: string
  /** Profile email (public). */
  email?: string
  emails?: { email: string; primary?: boolean; verified?: boolean }[]
  /** Org login (GitHub's spelling) → membership state. */
  orgs?: Record<string, 'active' | 'pending'>
  teams?: { org: string; slug: string }[]
}

export interface FakeGithubOptions {
  clientId?: string
  clientSecret?: string
  users?: FakeGithubUser[]
  /** Make API calls fail with this status (e.g. 502) to test outages. */
  failApiWith?: number
}

export interface FakeGithubCall {
  method: string
  path: string
  query: string
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8' } })

export function createFakeGithub(options: FakeGithubOptions = {}) {
  const clientId = options.clientId ?? 'fake-client-id'
  const clientSecret = options.clientSecret ?? 'fake-client-secret'
  const users = new Map<string, FakeGithubUser>()
  for (const user of options.users ?? []) users.set(user.login, user)
  const codes = new Map<string, string>()
  const tokens = new Map<string, string>()
  const calls: FakeGithubCall[] = []
  let approving: { login: string } | { deny: string } | undefined
  let counter = 0

  const codeFor = (login: string): string => {
    if (!users.has(login)) throw new Error(`fake GitHub has no user ${login}`)
    const code = `code-${login}-${++counter}`
    codes.set(code, login)
    return code
  }

  function userOf(request: Request): FakeGithubUser | undefined {
    const header = request.headers.get('authorization') ?? ''
    const token = header.replace(/^(bearer|token)\s+/i, '')
    const login = tokens.get(token)
    return login ? users.get(login) : undefined
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url)
    calls.push({ method: request.method, path: url.pathname, query: url.search })

    if (request.method === 'GET' && url.pathname === '/login/oauth/authorize') {
      const redirect = url.searchParams.get('redirect_uri')
      const state = url.searchParams.get('state') ?? ''
      if (url.searchParams.get('client_id') !== clientId || !redirect) return new Response('unknown OAuth app', { status: 404 })
      if (!approving) return new Response('<html><body>Authorize crabbox?</body></html>', { headers: { 'content-type': 'text/html' } })
      const target = new URL(redirect)
      if ('deny' in approving) target.searchParams.set('error', approving.deny)
      else target.searchParams.set('code', codeFor(approving.login))
      target.searchParams.set('state', state)
      return new Response(null, { status: 302, headers: { location: target.toString() } })
    }

    if (request.method === 'POST' && url.pathname === '/login/oauth/access_token') {
      const form = new URLSearchParams(new TextDecoder().decode(await request.arrayBuffer()))
      if (form.get('client_id') !== clientId || form.get('client_secret') !== clientSecret) {
        return json(200, {
          error: 'incorrect_client_credentials',
          error_description: 'The client_id and/or client_secret passed are incorrect.',
        })
      }
      const login = codes.get(form.get('code') ?? '')
      if (!login) return json(200, { error: 'bad_verification_code', error_description: 'The code passed is incorrect or expired.' })
      codes.delete(form.get('code')!)
      const token = `gho_fake_${login}_${++counter}`
      tokens.set(token, login)
      return json(200, { access_token: token, token_type: 'bearer', scope: 'read:org,read:user,user:email' })
    }

    if (!url.pathname.startsWith('/user')) return json(404, { message: 'Not Found' })
    if (options.failApiWith) return json(options.failApiWith, { message: 'Server Error' })
    const user = userOf(request)
    if (!user) return json(401, { message: 'Bad credentials' })

    if (url.pathname === '/user')
      return json(200, { login: user.login, id: 1000 + user.login.length, name: user.name ?? null, email: user.email ?? null })
    if (url.pathname === '/user/emails') return json(200, user.emails ?? [])
    const membership = /^\/user\/memberships\/orgs\/([^/]+)$/.exec(url.pathname)
    if (membership) {
      const wanted = decodeURIComponent(membership[1]!).toLowerCase()
      const org = Object.keys(user.orgs ?? {}).find((name) => name.toLowerCase() === wanted)
      if (!org) return json(404, { message: 'Not Found' })
      return json(200, { state: user.orgs![org], role: 'member', organization: { login: org } })
    }
    if (url.pathname === '/user/teams') {
      const perPage = Number(url.searchParams.get('per_page') ?? '30')
      const page = Number(url.searchParams.get('page') ?? '1')
      const teams = (user.teams ?? []).map((t) => ({ slug: t.slug, name: t.slug, organization: { login: t.org } }))
      return json(200, teams.slice((page - 1) * perPage, page * perPage))
    }
    return json(404, { message: 'Not Found' })
  }

  return {
    handler,
    clientId,
    clientSecret,
    calls,
    addUser: (user: FakeGithubUser) => void users.set(user.login, user),
    /** A fresh one-use code for `login`, as if they approved in the browser. */
    codeFor,
    /** What the authorize page does next: redirect with a code for this user, redirect with an error, or just show a page. */
    approveAs: (login: string | undefined) => void (approving = login ? { login } : undefined),
    denyWith: (error: string) => void (approving = { deny: error }),
  }
}

export type FakeGithub = ReturnType<typeof createFakeGithub>
