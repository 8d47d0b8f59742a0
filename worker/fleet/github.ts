import * as v from 'valibot'
import type { GithubCallbackQuery, GithubLoginConfirmForm } from '../../src/protocol/auth.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { sanitizeOrg } from '../auth/identity.js'
import { secretsEqual, signUserToken, userTokenSecret } from '../auth/tokens.js'
import type { Env } from '../env.js'
import { sessionCookie } from '../portal/session.js'
import { setting } from '../env.js'
import type { FleetDeps } from './deps.js'
import { confirmPage, htmlPage } from './github-pages.js'
import type { FleetStorage } from './storage.js'

/**
 * GitHub login (`/v1/auth/github/*`). The CLI starts a login with the hash of a secret
 * and gets a short user code to show; the user approves in a browser, GitHub calls back
 * here, the broker's page asks for the code, and the CLI polls with the secret to collect
 * a signed `cbxu_` user token once the code was confirmed. The code binds the login to the
 * terminal that started it: a login someone else started and you approved gives them
 * nothing unless you also type their code. Pending logins live in SQLite for five
 * minutes, at most 10 per client address.
 */

export const LOGIN_TTL_MS = 5 * 60_000
/** Pending logins one client address (`CF-Connecting-IP`; an IPv6 address counts by its /64) may hold. */
export const MAX_PENDING_LOGINS_PER_ADDRESS = 10
/** All pending logins together: a bound on storage, reached only from 1,000 addresses at once. */
export const MAX_PENDING_LOGINS = 10_000
/** Wrong codes the confirmation page may send before the login fails. */
export const MAX_CODE_ATTEMPTS = 5
/** User codes: no 0/O or 1/I to mistake; 32 symbols, so a byte's low 5 bits pick one evenly. */
const CODE_ALPHABET = '23456789ABCDEFGHJKLMNPQRSTUVWXYZ'
const SCOPE = 'read:user user:email read:org'
const GITHUB_TIMEOUT_MS = 10_000

export interface GithubSettings {
  clientId: string
  clientSecret: string
  tokenSecret: string
  /** github.com (OAuth pages) and api.github.com, overridable for tests and GHE. */
  webUrl: string
  apiUrl: string
  /** The broker's public URL: the only origin login URLs name (never the request's Host). */
  publicUrl: string
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

/** The settings GitHub login needs that `env` lacks (empty when it is configured). */
export function missingGithubSettings(env: Env): string[] {
  return [
    ...['CRABBOX_GITHUB_CLIENT_ID', 'CRABBOX_GITHUB_CLIENT_SECRET', 'CRABBOX_PUBLIC_URL'].filter((name) => !setting(env, name)),
    ...(userTokenSecret(env) ? [] : ['CRABBOX_SESSION_SECRET']),
  ]
}

/** The 503 GitHub login answers until it is configured, naming what is missing. */
export function githubNotConfigured(env: Env): ApiError {
  const missing = missingGithubSettings(env)
  return new ApiError(
    503,
    'github_oauth_not_configured',
    `GitHub OAuth is not configured${missing.length ? ` (set ${missing.join(', ')})` : ''}`,
  )
}

/** OAuth settings from the environment; undefined when the app is not configured. */
export function githubSettings(env: Env): GithubSettings | undefined {
  const clientId = setting(env, 'CRABBOX_GITHUB_CLIENT_ID')
  const clientSecret = setting(env, 'CRABBOX_GITHUB_CLIENT_SECRET')
  const tokenSecret = userTokenSecret(env)
  const publicUrl = setting(env, 'CRABBOX_PUBLIC_URL')
  if (!clientId || !clientSecret || !tokenSecret || !publicUrl) return undefined
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
    publicUrl: trimSlash(publicUrl),
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

/**
 * The client address a login counts against, the code the CLI shows, the token only
 * the confirmation page carries, and how many wrong codes it sent (schema.ts, after v1).
 */
export const GITHUB_LOGIN_SCHEMA_V2 = [
  'ALTER TABLE github_logins ADD COLUMN address TEXT',
  'ALTER TABLE github_logins ADD COLUMN user_code TEXT',
  'ALTER TABLE github_logins ADD COLUMN confirm_token TEXT',
  'ALTER TABLE github_logins ADD COLUMN code_attempts INTEGER NOT NULL DEFAULT 0',
  'CREATE INDEX IF NOT EXISTS github_logins_by_address ON github_logins (address, expires_at)',
]

type LoginRow = {
  id: string
  state: string
  mode: 'cli' | 'portal'
  poll_hash: string | null
  provider: string | null
  return_to: string | null
  redirect_uri: string
  /** `confirming`: GitHub approved; waiting for the browser to confirm the user code (CLI logins). */
  status: 'pending' | 'confirming' | 'complete' | 'failed'
  result: string | null
  expires_at: number
  address: string | null
  user_code: string | null
  confirm_token: string | null
  code_attempts: number
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

/** A fresh user code, `XXXX-XXXX`. */
function newUserCode(): string {
  const symbols = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => CODE_ALPHABET[b & 31]!).join('')
  return `${symbols.slice(0, 4)}-${symbols.slice(4)}`
}

/** What a person typed, in the code's own form: case, spaces and dashes do not matter. */
export function normalizeUserCode(text: string): string {
  const symbols = text.toUpperCase().replace(/[^A-Z0-9]/g, '')
  return symbols.length === 8 ? `${symbols.slice(0, 4)}-${symbols.slice(4)}` : symbols
}

/**
 * The key pending logins are counted under: an IPv4 address as is, an IPv6 address by
 * its /64 (one site's subnet, whose addresses its owner picks freely), `unknown` without one.
 */
export function clientAddressKey(address: string | null | undefined): string {
  const ip = (address ?? '').trim().toLowerCase()
  if (!ip || ip.length > 64) return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(ip)
  if (mapped) return mapped[1]!
  if (!ip.includes(':')) return ip
  const [head, tail] = ip.split('::') as [string, string | undefined]
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
  return `${groups
    .slice(0, 4)
    .map((group) => group.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`
}

export interface StartedLogin {
  loginID: string
  url: string
  expiresAt: string
  /** CLI logins: the code the browser must confirm. */
  userCode?: string
}

/** Removes expired logins (a bounded batch), then refuses a start over either cap. */
function admitLogin(storage: FleetStorage, address: string, now: number): void {
  storage.run('DELETE FROM github_logins WHERE id IN (SELECT id FROM github_logins WHERE expires_at <= ? LIMIT 500)', now)
  const mine = storage.one<{ n: number }>('SELECT COUNT(*) AS n FROM github_logins WHERE address = ? AND expires_at > ?', address, now)!.n
  if (mine >= MAX_PENDING_LOGINS_PER_ADDRESS)
    throw new ApiError(
      429,
      'login_rate_limited',
      `Too many pending GitHub logins from your address (at most ${MAX_PENDING_LOGINS_PER_ADDRESS}). Finish one, or wait: they expire after ${LOGIN_TTL_MS / 60_000} minutes.`,
    )
  const pending = storage.one<{ n: number }>('SELECT COUNT(*) AS n FROM github_logins WHERE expires_at > ?', now)!.n
  if (pending >= MAX_PENDING_LOGINS) throw new ApiError(429, 'login_rate_limited', 'Too many pending GitHub logins. Try again shortly.')
}

/**
 * Records a pending login and returns GitHub's authorize URL (and, for the CLI, the
 * user code). The redirect URI is always CRABBOX_PUBLIC_URL's: never the request's Host.
 * `client.address` is the caller's `CF-Connecting-IP`.
 */
export function startGithubLogin(
  deps: Pick<FleetDeps, 'storage' | 'env' | 'now'>,
  input:
    | { mode: 'cli'; pollSecretHash: string; provider?: string }
    /** `browserHash`: SHA-256 hex of the secret in the browser's login cookie; the callback then requires it. */
    | { mode: 'portal'; returnTo: string; browserHash?: string },
  client: { address?: string | null } = {},
): StartedLogin {
  const settings = githubSettings(deps.env)
  if (!settings) throw githubNotConfigured(deps.env)
  const storage = deps.storage
  const now = deps.now().getTime()
  const redirectUri = `${settings.publicUrl}/v1/auth/github/callback`
  const loginID = `login_${randomHex(16)}`
  const state = `state_${randomHex(16)}`
  const userCode = input.mode === 'cli' ? newUserCode() : undefined
  const address = clientAddressKey(client.address)
  const expiresAt = now + LOGIN_TTL_MS
  storage.transaction(() => {
    admitLogin(storage, address, now)
    const provider = input.mode === 'cli' && (input.provider === 'aws' || input.provider === 'hetzner') ? input.provider : null
    storage.run(
      `INSERT INTO github_logins (id, state, mode, poll_hash, provider, return_to, redirect_uri, status, expires_at, address, user_code)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      loginID,
      state,
      input.mode,
      // A portal login keeps its browser binding where a CLI login keeps its poll secret's hash.
      input.mode === 'cli' ? input.pollSecretHash : (input.browserHash ?? null),
      provider,
      input.mode === 'portal' ? input.returnTo : null,
      redirectUri,
      'pending',
      expiresAt,
      address,
      userCode ?? null,
    )
  })
  const url = new URL(`${settings.webUrl}/login/oauth/authorize`)
  url.searchParams.set('client_id', settings.clientId)
  url.searchParams.set('redirect_uri', redirectUri)
  url.searchParams.set('scope', SCOPE)
  url.searchParams.set('state', state)
  return { loginID, url: url.toString(), expiresAt: new Date(expiresAt).toISOString(), ...(userCode ? { userCode } : {}) }
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

// ---- callback, confirmation and poll -------------------------------------------------------

function finishLogin(storage: FleetStorage, id: string, status: 'complete' | 'failed', result: LoginResult): void {
  storage.run('UPDATE github_logins SET status = ?, result = ? WHERE id = ?', status, JSON.stringify(result), id)
}

const expiredPage = () => htmlPage(400, 'Crabbox login expired', 'This login link has expired. Run `crabbox login` again.')
const finishedPage = () => htmlPage(400, 'Crabbox login already finished', 'This login was already used. Return to your terminal.')

/**
 * `GET /v1/auth/github/callback`: GitHub redirects the browser here. Answers HTML: for a
 * CLI login, the page asking for the user code (the login is not complete yet).
 */
export async function githubCallback(
  deps: Pick<FleetDeps, 'storage' | 'env' | 'now'>,
  query: GithubCallbackQuery,
  /** The portal login cookie the browser sent (binds a portal login to the browser that started it). */
  browser?: string,
): Promise<Response> {
  const settings = githubSettings(deps.env)
  if (!settings) return htmlPage(503, 'Crabbox login unavailable', 'GitHub OAuth is not configured on this broker.')
  const storage = deps.storage
  const login = query.state ? storage.one<LoginRow>('SELECT * FROM github_logins WHERE state = ?', query.state) : undefined
  if (!login || login.expires_at <= deps.now().getTime()) return expiredPage()
  if (login.status !== 'pending') return finishedPage()
  // A portal login started in one browser cannot be finished in another (login CSRF).
  if (login.mode === 'portal' && login.poll_hash && !(browser && (await secretsEqual(await sha256Hex(browser), login.poll_hash))))
    return htmlPage(403, 'Crabbox login not confirmed', 'This sign-in was started in another browser. Sign in again from the portal.')
  if (query.error || !query.code) {
    const error = query.error ?? 'missing_code'
    finishLogin(storage, login.id, 'failed', { error })
    return htmlPage(400, 'Crabbox login failed', `GitHub did not approve the login (${error}). Run \`crabbox login\` again.`)
  }
  if (login.mode === 'cli' && !login.user_code) {
    // Started before user codes existed: it cannot be confirmed.
    finishLogin(storage, login.id, 'failed', { error: 'this login has no confirmation code; run `crabbox login` again' })
    return htmlPage(400, 'Crabbox login failed', 'This login cannot be confirmed. Run `crabbox login` again.')
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
    return new Response(null, {
      status: 302,
      headers: { location: login.return_to ?? '/portal', 'set-cookie': sessionCookie(token), 'cache-control': 'no-store' },
    })
  }
  // The token waits for the code; only this page (this browser) learns the confirm token.
  const confirmToken = randomHex(16)
  const result: LoginResult = { token, owner: identity.owner, org: identity.org, login: identity.login }
  const updated = storage.run(
    "UPDATE github_logins SET status = 'confirming', result = ?, confirm_token = ? WHERE id = ? AND status = 'pending'",
    JSON.stringify(result),
    confirmToken,
    login.id,
  )
  if (!updated) return finishedPage() // a concurrent callback for the same login got here first
  return confirmPage(200, { state: login.state, confirmToken, login: identity.login })
}

/** The origin a browser form for `login` comes from: the broker's public origin the callback named. */
function formOrigin(login: LoginRow): string | undefined {
  try {
    return new URL(login.redirect_uri).origin
  } catch {
    return undefined
  }
}

/**
 * `POST /v1/auth/github/confirm`: the confirmation page sends the code the person typed.
 * The login completes (the poll then hands over the token) only with the page's own
 * confirm token and the right code; after MAX_CODE_ATTEMPTS wrong codes it fails.
 * `origin` is the request's Origin header: a browser post from another site is refused.
 */
export async function confirmGithubLogin(
  deps: Pick<FleetDeps, 'storage' | 'now'>,
  form: GithubLoginConfirmForm,
  origin: string | undefined,
): Promise<Response> {
  const storage = deps.storage
  const read = () => storage.one<LoginRow>('SELECT * FROM github_logins WHERE state = ?', form.state)
  const login = read()
  if (!login || login.expires_at <= deps.now().getTime()) return expiredPage()
  if (origin !== undefined && origin !== formOrigin(login))
    return htmlPage(403, 'Crabbox login not confirmed', 'The confirmation came from another site. Use the page the broker showed.')
  if (login.status === 'pending')
    return htmlPage(400, 'Crabbox login not approved yet', 'GitHub has not approved this login yet. Open the link `crabbox login` printed.')
  if (login.status !== 'confirming' || !login.confirm_token || !login.user_code) return finishedPage()
  if (!form.confirmToken || !(await secretsEqual(form.confirmToken, login.confirm_token)))
    return htmlPage(
      403,
      'Crabbox login not confirmed',
      'This confirmation did not come from the page the broker showed after GitHub approved.',
    )
  const right = await secretsEqual(normalizeUserCode(form.userCode), login.user_code)
  // Re-read after the awaits: a concurrent confirmation may have finished the login.
  const current = read()
  if (current?.id !== login.id || current.status !== 'confirming') return finishedPage()
  const result = JSON.parse(current.result ?? '{}') as LoginResult
  if (right) {
    storage.run("UPDATE github_logins SET status = 'complete' WHERE id = ?", current.id)
    return htmlPage(200, 'Crabbox login complete', `Logged in as ${result.login}. You can close this tab and return to your terminal.`)
  }
  const attempts = storage.one<{ code_attempts: number }>(
    'UPDATE github_logins SET code_attempts = code_attempts + 1 WHERE id = ? RETURNING code_attempts',
    current.id,
  )!.code_attempts
  if (attempts >= MAX_CODE_ATTEMPTS) {
    finishLogin(storage, current.id, 'failed', { error: `the confirmation code was entered wrong ${attempts} times` })
    return htmlPage(400, 'Crabbox login failed', 'The code was wrong too many times. Run `crabbox login` again.')
  }
  const left = MAX_CODE_ATTEMPTS - attempts
  return confirmPage(400, {
    state: current.state,
    confirmToken: login.confirm_token,
    login: result.login ?? '',
    error: `That is not the code crabbox login shows. ${left} ${left === 1 ? 'try' : 'tries'} left.`,
  })
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
  // Still pending until the browser confirmed the code, even once GitHub approved.
  if (current.status === 'pending' || current.status === 'confirming')
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
