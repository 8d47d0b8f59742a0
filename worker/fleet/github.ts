import * as v from 'valibot'
import type { GithubCallbackQuery } from '../../src/protocol/auth.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { sanitizeOrg } from '../auth/identity.js'
import { secretsEqual, signUserToken, userTokenSecret, USER_TOKEN_LIFETIME_SECONDS } from '../auth/tokens.js'
import type { Env } from '../env.js'
import { setting } from '../env.js'
import type { FleetDeps } from './deps.js'
import type { FleetStorage } from './storage.js'

/**
 * GitHub login (`/v1/auth/github/*`). The CLI starts a login with the hash of a secret,
 * the user approves in a browser, GitHub calls back here, and the CLI polls with the
 * secret to collect a signed `cbxu_` user token. Pending logins live in SQLite for ten
 * minutes; at most 100 at a time.
 */

export const LOGIN_TTL_MS = 10 * 60_000
export const MAX_PENDING_LOGINS = 100
const SCOPE = 'read:user user:email read:org'
const GITHUB_TIMEOUT_MS = 10_000

export interface GithubSettings {
  clientId: string
  clientSecret: string
  tokenSecret: string
  /** github.com (OAuth pages) and api.github.com, overridable for tests and GHE. */
  webUrl: string
  apiUrl: string
  publicUrl?: string
  allowedOrgs: string[]
  /** Preferred org, lowercased, when it is in `allowedOrgs`. */
  defaultOrg: string
  /** `org/slug` pairs, lowercased. */
  allowedTeams: { org: string; slug: string }[]
}

const list = (value: string | undefined) =>
  (value ?? '')
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean)

const trimSlash = (url: string) => url.replace(/\/+$/, '')

/** OAuth settings from the environment; undefined when the app is not configured. */
export function githubSettings(env: Env): GithubSettings | undefined {
  const clientId = setting(env, 'CRABBOX_GITHUB_CLIENT_ID')
  const clientSecret = setting(env, 'CRABBOX_GITHUB_CLIENT_SECRET')
  const tokenSecret = userTokenSecret(env)
  if (!clientId || !clientSecret || !tokenSecret) return undefined
  const defaultOrg = sanitizeOrg(setting(env, 'CRABBOX_DEFAULT_ORG') ?? 'openclaw').toLowerCase()
  const allowedOrgs = list(setting(env, 'CRABBOX_GITHUB_ALLOWED_ORGS') ?? setting(env, 'CRABBOX_GITHUB_ALLOWED_ORG'))
  const orgs = allowedOrgs.length ? allowedOrgs : [defaultOrg]
  const chosen = orgs.includes(defaultOrg) ? defaultOrg : orgs[0]!
  return {
    clientId,
    clientSecret,
    tokenSecret,
    webUrl: trimSlash(setting(env, 'CRABBOX_GITHUB_URL') ?? 'https://github.com'),
    apiUrl: trimSlash(setting(env, 'CRABBOX_GITHUB_API_URL') ?? 'https://api.github.com'),
    publicUrl: setting(env, 'CRABBOX_PUBLIC_URL'),
    allowedOrgs: orgs,
    defaultOrg: chosen,
    allowedTeams: list(setting(env, 'CRABBOX_GITHUB_ALLOWED_TEAMS') ?? setting(env, 'CRABBOX_GITHUB_ALLOWED_TEAM')).map((entry) => {
      const [org, slug] = entry.includes('/') ? entry.split('/', 2) : [chosen, entry]
      return { org: org!, slug: slug! }
    }),
  }
}

/** Pending GitHub logins; applied once when the object starts (schema.ts). */
export const GITHUB_LOGIN_SCHEMA = [
  `CREATE TABLE IF NOT EXISTS github_logins (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL UNIQUE,
    mode TEXT NOT NULL,
    poll_hash TEXT,
    provider TEXT,
    return_to TEXT,
    redirect_uri TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    expires_at INTEGER NOT NULL
  )`,
  'CREATE INDEX IF NOT EXISTS github_logins_by_expiry ON github_logins (expires_at)',
]

type LoginRow = {
  id: string
  state: string
  mode: 'cli' | 'portal'
  poll_hash: string | null
  provider: string | null
  return_to: string | null
  redirect_uri: string
  status: 'pending' | 'complete' | 'failed'
  result: string | null
  expires_at: number
}

interface LoginResult {
  token?: string
  owner?: string
  org?: string
  login?: string
  error?: string
}

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
const randomHex = (n: number) => hex(crypto.getRandomValues(new Uint8Array(n)))

export async function sha256Hex(text: string): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))))
}

export interface StartedLogin {
  loginID: string
  url: string
  expiresAt: string
}

/**
 * Records a pending login and returns GitHub's authorize URL. `origin` is the broker
 * origin the request came to (the redirect URI uses CRABBOX_PUBLIC_URL when set).
 */
export function startGithubLogin(
  deps: Pick<FleetDeps, 'storage' | 'env' | 'now'>,
  input: { mode: 'cli'; pollSecretHash: string; provider?: string } | { mode: 'portal'; returnTo: string },
  origin: string,
): StartedLogin {
  const settings = githubSettings(deps.env)
  if (!settings) throw new ApiError(503, 'github_oauth_not_configured', 'GitHub OAuth is not configured')
  const storage = deps.storage
  const now = deps.now().getTime()
  const redirectUri = `${trimSlash(settings.publicUrl ?? origin)}/v1/auth/github/callback`
  const loginID = `login_${randomHex(16)}`
  const state = `state_${randomHex(16)}`
  const expiresAt = now + LOGIN_TTL_MS
  storage.transaction(() => {
    // Expired logins go first (bounded: there are never many), then the cap.
    storage.run('DELETE FROM github_logins WHERE id IN (SELECT id FROM github_logins WHERE expires_at <= ? LIMIT 500)', now)
    const pending = storage.one<{ n: number }>('SELECT COUNT(*) AS n FROM github_logins WHERE expires_at > ?', now)!.n
    if (pending >= MAX_PENDING_LOGINS) throw new ApiError(429, 'login_rate_limited', 'Too many pending GitHub logins. Try again shortly.')
    const provider = input.mode === 'cli' && (input.provider === 'aws' || input.provider === 'hetzner') ? input.provider : null
    storage.run(
      'INSERT INTO github_logins (id, state, mode, poll_hash, provider, return_to, redirect_uri, status, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      loginID,
      state,
      input.mode,
      input.mode === 'cli' ? input.pollSecretHash : null,
      provider,
      input.mode === 'portal' ? input.returnTo : null,
      redirectUri,
      'pending',
      expiresAt,
    )
  })
  const url = new URL(`${settings.webUrl}/login/oauth/authorize`)
  url.searchParams.set('client_id', settings.clientId)
  url.searchParams.set('redirect_uri', redirectUri)
  url.searchParams.set('scope', SCOPE)
  url.searchParams.set('state', state)
  return { loginID, url: url.toString(), expiresAt: new Date(expiresAt).toISOString() }
}

// ---- talking to GitHub ----------------------------------------------------------------

class Denied extends Error {}

async function github<T>(settings: GithubSettings, token: string, path: string): Promise<{ status: number; body: T }> {
  const response = await fetch(`${settings.apiUrl}${path}`, {
    headers: {
      accept: 'application/vnd.github+json',
      authorization: `Bearer ${token}`,
      'user-agent': 'crabbox-broker',
      'x-github-api-version': '2022-11-28',
    },
    signal: AbortSignal.timeout(GITHUB_TIMEOUT_MS),
  })
  const text = await response.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  if (response.status >= 500 || (response.status >= 400 && response.status !== 404 && response.status !== 403)) {
    throw new Error(`GitHub ${path} answered ${response.status}`)
  }
  return { status: response.status, body: body as T }
}

const GithubUser = v.object({ login: v.string(), name: v.optional(v.nullable(v.string())), email: v.optional(v.nullable(v.string())) })
const GithubEmails = v.array(v.object({ email: v.string(), primary: v.optional(v.boolean()), verified: v.optional(v.boolean()) }))
const GithubMembership = v.object({ state: v.string(), organization: v.object({ login: v.string() }) })
const GithubTeams = v.array(v.object({ slug: v.string(), organization: v.object({ login: v.string() }) }))

const parse = <S extends v.GenericSchema>(schema: S, value: unknown, what: string): v.InferOutput<S> => {
  const result = v.safeParse(schema, value)
  if (!result.success) throw new Error(`GitHub sent an unexpected ${what}`)
  return result.output
}

interface GithubIdentity {
  owner: string
  org: string
  login: string
  name?: string
}

/** Code → access token → user, email, org membership (and team) → identity, or Denied. */
async function identify(settings: GithubSettings, code: string, redirectUri: string): Promise<GithubIdentity> {
  const exchange = await fetch(`${settings.webUrl}/login/oauth/access_token`, {
    method: 'POST',
    headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'crabbox-broker' },
    body: new URLSearchParams({ client_id: settings.clientId, client_secret: settings.clientSecret, code, redirect_uri: redirectUri }),
    signal: AbortSignal.timeout(GITHUB_TIMEOUT_MS),
  })
  const grant = (await exchange.json().catch(() => ({}))) as { access_token?: unknown; error?: unknown; error_description?: unknown }
  if (!exchange.ok || typeof grant.access_token !== 'string') {
    throw new Error(`GitHub did not accept the login code (${typeof grant.error === 'string' ? grant.error : `http ${exchange.status}`})`)
  }
  const token = grant.access_token

  const user = parse(GithubUser, (await github(settings, token, '/user')).body, 'user')
  const emails = await github<unknown>(settings, token, '/user/emails')
  const verified = emails.status === 200 ? parse(GithubEmails, emails.body, 'email list').filter((e) => e.verified) : []
  const owner = (verified.find((e) => e.primary) ?? verified[0])?.email ?? user.email ?? `${user.login}@users.noreply.github.com`

  const membership = await github<unknown>(settings, token, `/user/memberships/orgs/${encodeURIComponent(settings.defaultOrg)}`)
  const member = membership.status === 200 ? parse(GithubMembership, membership.body, 'membership') : undefined
  if (!member || member.state !== 'active' || member.organization.login.toLowerCase() !== settings.defaultOrg) {
    throw new Denied(`GitHub user ${user.login} is not an active member of ${settings.defaultOrg}.`)
  }

  if (settings.allowedTeams.length) {
    let allowed = false
    for (let page = 1; page <= 10 && !allowed; page++) {
      const teams = parse(
        GithubTeams,
        (await github<unknown>(settings, token, `/user/teams?per_page=100&page=${page}`)).body ?? [],
        'team list',
      )
      allowed = teams.some((team) =>
        settings.allowedTeams.some((t) => t.slug === team.slug.toLowerCase() && t.org === team.organization.login.toLowerCase()),
      )
      if (teams.length < 100) break
    }
    if (!allowed)
      throw new Denied(
        `GitHub user ${user.login} is not in an allowed team (${settings.allowedTeams.map((t) => `${t.org}/${t.slug}`).join(', ')}).`,
      )
  }
  return { owner, org: member.organization.login, login: user.login, ...(user.name ? { name: user.name } : {}) }
}

// ---- callback and poll ---------------------------------------------------------------------

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

export function htmlPage(status: number, title: string, message: string, headers: Record<string, string> = {}): Response {
  const body = `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>`
  return new Response(body, { status, headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...headers } })
}

function finishLogin(storage: FleetStorage, id: string, status: 'complete' | 'failed', result: LoginResult): void {
  storage.run('UPDATE github_logins SET status = ?, result = ? WHERE id = ?', status, JSON.stringify(result), id)
}

/** `GET /v1/auth/github/callback`: GitHub redirects the browser here. Answers HTML. */
export async function githubCallback(deps: Pick<FleetDeps, 'storage' | 'env' | 'now'>, query: GithubCallbackQuery): Promise<Response> {
  const settings = githubSettings(deps.env)
  if (!settings) return htmlPage(503, 'Crabbox login unavailable', 'GitHub OAuth is not configured on this broker.')
  const storage = deps.storage
  const login = query.state ? storage.one<LoginRow>('SELECT * FROM github_logins WHERE state = ?', query.state) : undefined
  if (!login || login.expires_at <= deps.now().getTime())
    return htmlPage(400, 'Crabbox login expired', 'This login link has expired. Run `crabbox login` again.')
  if (login.status !== 'pending')
    return htmlPage(400, 'Crabbox login already finished', 'This login was already used. Return to your terminal.')
  if (query.error || !query.code) {
    const error = query.error ?? 'missing_code'
    finishLogin(storage, login.id, 'failed', { error })
    return htmlPage(400, 'Crabbox login failed', `GitHub did not approve the login (${error}). Run \`crabbox login\` again.`)
  }
  let identity: GithubIdentity
  try {
    identity = await identify(settings, query.code, login.redirect_uri)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    finishLogin(storage, login.id, 'failed', { error: message })
    if (error instanceof Denied) return htmlPage(403, 'Crabbox login denied', message)
    return htmlPage(502, 'Crabbox login failed', `${message}. Run \`crabbox login\` again.`)
  }
  const token = await signUserToken(identity, settings.tokenSecret, deps.now().getTime())
  if (login.mode === 'portal') {
    storage.run('DELETE FROM github_logins WHERE id = ?', login.id)
    const cookie = `crabbox_session=${encodeURIComponent(token)}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=${USER_TOKEN_LIFETIME_SECONDS}`
    return new Response(null, {
      status: 302,
      headers: { location: login.return_to ?? '/portal', 'set-cookie': cookie, 'cache-control': 'no-store' },
    })
  }
  finishLogin(storage, login.id, 'complete', { token, owner: identity.owner, org: identity.org, login: identity.login })
  return htmlPage(200, 'Crabbox login complete', `Logged in as ${identity.login}. You can close this tab and return to your terminal.`)
}

export type PollAnswer = { status: number; body: Record<string, unknown> }

/** `POST /v1/auth/github/poll`: single-use hand-over of the token to the CLI that started the login. */
export async function pollGithubLogin(
  deps: Pick<FleetDeps, 'storage' | 'now'>,
  input: { loginID: string; pollSecret: string },
): Promise<PollAnswer> {
  const storage = deps.storage
  const hash = await sha256Hex(input.pollSecret)
  // Everything after the hash is synchronous: read, check and delete cannot interleave.
  const login = storage.one<LoginRow>('SELECT * FROM github_logins WHERE id = ?', input.loginID)
  if (!login || login.expires_at <= deps.now().getTime()) return { status: 410, body: { status: 'expired' } }
  if (login.mode !== 'cli' || !login.poll_hash)
    return { status: 403, body: { error: ErrorCode.forbidden, message: 'this login was not started by a CLI' } }
  if (!(await secretsEqual(hash, login.poll_hash)))
    return { status: 403, body: { error: ErrorCode.forbidden, message: 'poll secret does not match' } }
  // Re-read after the await: a concurrent poll may have taken the token already.
  const current = storage.one<LoginRow>('SELECT * FROM github_logins WHERE id = ?', input.loginID)
  if (!current) return { status: 410, body: { status: 'expired' } }
  const result = current.result ? (JSON.parse(current.result) as LoginResult) : {}
  if (current.status === 'pending')
    return { status: 200, body: { status: 'pending', expiresAt: new Date(current.expires_at).toISOString() } }
  storage.run('DELETE FROM github_logins WHERE id = ?', current.id)
  if (current.status === 'failed') return { status: 400, body: { status: 'failed', error: result.error ?? 'login failed' } }
  return {
    status: 200,
    body: {
      status: 'complete',
      token: result.token,
      owner: result.owner,
      org: result.org,
      login: result.login,
      ...(current.provider ? { provider: current.provider } : {}),
    },
  }
}
