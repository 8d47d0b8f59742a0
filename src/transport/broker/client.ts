import { execFileSync } from 'node:child_process'
import * as v from 'valibot'
import { CrabboxError, type ExitCodeName } from '../../errors.js'
import { describeIssues, ErrorBody } from '../../protocol/errors.js'

/** Cloudflare Access credentials: a service token (ID and secret, sent only as a pair) and/or a token. */
export interface AccessCredentials {
  clientId?: string
  clientSecret?: string
  token?: string
}

/** How Access credentials are configured: for `config show` and `doctor`, never the values. */
export type AccessAuth = 'missing' | 'service-token' | 'token' | 'service-token+token' | 'incomplete'

export function accessAuth(access: AccessCredentials | undefined): AccessAuth {
  const pair = Boolean(access?.clientId) && Boolean(access?.clientSecret)
  if (!pair && (access?.clientId || access?.clientSecret)) return 'incomplete'
  if (pair) return access?.token ? 'service-token+token' : 'service-token'
  return access?.token ? 'token' : 'missing'
}

/** The Access headers for these credentials (`CF-Access-Client-Id`/`-Secret`, `cf-access-token`). */
export function accessHeaders(access: AccessCredentials | undefined): Record<string, string> {
  const headers: Record<string, string> = {}
  if (access?.clientId && access.clientSecret) {
    headers['cf-access-client-id'] = access.clientId
    headers['cf-access-client-secret'] = access.clientSecret
  }
  if (access?.token) headers['cf-access-token'] = access.token
  return headers
}

/** Where Cloudflare Access sends a request it wants a login for. */
const ACCESS_LOGIN = /\/cdn-cgi\/access\/|cloudflareaccess\.com/

const accessSettings =
  'broker.access.clientId and broker.access.clientSecret (a service token; env CRABBOX_ACCESS_CLIENT_ID and CRABBOX_ACCESS_CLIENT_SECRET), or broker.access.token (env CRABBOX_ACCESS_TOKEN)'

/**
 * A refusal that did not come from crabbox: a 401/403 without the broker's JSON error
 * body, or a redirect to an Access login page, is Cloudflare Access in front of the broker.
 */
function accessRefusal(response: Response, text: string, where: string, access: AccessCredentials | undefined): BrokerError | undefined {
  const redirected = response.redirected && ACCESS_LOGIN.test(response.url)
  if (!redirected && response.status !== 401 && response.status !== 403) return undefined
  if (!redirected) {
    try {
      if (v.safeParse(ErrorBody, JSON.parse(text)).success) return undefined
    } catch {
      // not JSON: not the broker's own answer
    }
  }
  const configured = accessAuth(access)
  const message =
    configured === 'missing'
      ? `broker ${where}: refused by Cloudflare Access in front of the broker: Access credentials are needed`
      : configured === 'incomplete'
        ? `broker ${where}: refused by Cloudflare Access: the Access service token is incomplete (client ID and secret are both needed)`
        : `broker ${where}: refused by Cloudflare Access: the configured Access credentials (${configured}) were not accepted`
  return new BrokerError(message, {
    status: response.status,
    errorCode: 'access_denied',
    exit: 'auth',
    hint: `Set ${accessSettings}.`,
  })
}

export interface BrokerClientOptions {
  url: string
  token?: string
  adminToken?: string
  /** `X-Crabbox-Owner`; the broker trusts it only for shared and admin tokens. */
  owner?: string
  /** `X-Crabbox-Org`. */
  org?: string
  /** Cloudflare Access credentials, sent on every request and the control socket. */
  access?: AccessCredentials
  /** Per-request default; lease creation waits for a cloud machine, so it is generous. */
  timeoutMs?: number
  /** Where each token came from (`env NAME`, a config file path), named when the broker refuses it. */
  tokenSource?: string
  adminTokenSource?: string
}

export interface BrokerRequestOptions<T = unknown> {
  body?: unknown
  query?: Record<string, string | number | boolean | undefined>
  /** Validates the reply; without it the parsed JSON is returned unchecked. */
  schema?: v.GenericSchema<unknown, T>
  /** Send the admin token instead of the user token. */
  admin?: boolean
  signal?: AbortSignal
  timeoutMs?: number
}

export interface BrokerClient {
  readonly url: string
  request<T = unknown>(method: string, path: string, options?: BrokerRequestOptions<T>): Promise<T>
  requestText(method: string, path: string, options?: Omit<BrokerRequestOptions, 'schema'>): Promise<string>
  /** Headers for the control WebSocket (Authorization, identity and Cloudflare Access). */
  authHeaders(options?: { admin?: boolean }): Record<string, string>
}

/** A failed broker call: the HTTP status (0 when the broker was not reached) and the broker's `error` code. */
export class BrokerError extends CrabboxError {
  readonly status: number
  readonly errorCode: string

  constructor(message: string, options: { status: number; errorCode: string; exit: ExitCodeName; hint?: string; cause?: unknown }) {
    super(message, { exit: options.exit, hint: options.hint, code: options.errorCode, cause: options.cause })
    this.name = 'BrokerError'
    this.status = options.status
    this.errorCode = options.errorCode
  }
}

const defaultTimeoutMs = 300_000

/**
 * 401/403 are auth (3), 404 not found (4), other 4xx usage (2); no capacity and a
 * failing provider are provisioning (5); the rest plain errors (1).
 */
function exitFor(status: number, errorCode: string): ExitCodeName {
  if (errorCode === 'no_capacity' || errorCode === 'provider_failed') return 'provisioning'
  if (status === 401 || status === 403) return 'auth'
  if (status === 404) return 'notFound'
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) return 'usage'
  return 'error'
}

/** Where the token sent came from, for a 401: an env variable or a file is what the user must fix. */
function refusedToken(token: string | undefined, source: string | undefined, admin: boolean): string {
  const which = admin ? 'admin token' : 'broker token'
  if (!token)
    return `No ${which} is configured: run \`crabbox login\` (or set ${admin ? 'CRABBOX_ADMIN_TOKEN' : 'CRABBOX_COORDINATOR_TOKEN'}) and retry.`
  const from = source?.startsWith('env ')
    ? `the environment variable ${source.slice(4)}`
    : source?.startsWith('flag ')
      ? source
      : source
        ? `the config file ${source}`
        : 'the configuration'
  return `The broker refused the ${which} from ${from}: fix or unset it there, or run \`crabbox login\` for a new one.`
}

function hintFor(status: number, errorCode: string, admin: boolean, refused: () => string): string | undefined {
  if (errorCode === 'no_capacity')
    return 'Every machine is taken: `crabbox list` shows your leases and `crabbox stop <lease>` frees one; or retry later.'
  if (errorCode === 'provider_failed')
    return 'The broker could not get a machine from that provider (the message says why). Choose another with --provider or CRABBOX_PROVIDER (provider in config), or unset it to let the broker choose.'
  if (status === 401) return refused()
  if (status === 403 && admin)
    return 'This needs the admin token: `crabbox config set-broker --url URL --admin-token-stdin` or CRABBOX_ADMIN_TOKEN.'
  if (status === 403) return 'Your identity may not act on this; check `crabbox whoami`.'
  if (status === 404) return errorCode === 'not_found' ? 'Check the ID or slug; `crabbox list` shows what you can see.' : undefined
  if (status === 429) return 'The broker is rate limiting; wait a moment and retry.'
  if (status >= 500) return 'The broker failed; retry, and run `crabbox doctor` if it persists.'
  return undefined
}

let cachedGitEmail: string | undefined | null = null
/** `git config user.email`, read once per process and only when nothing else names the owner. */
function gitEmail(): string | undefined {
  if (cachedGitEmail !== null) return cachedGitEmail
  try {
    cachedGitEmail =
      execFileSync('git', ['config', 'user.email'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim() ||
      undefined
  } catch {
    cachedGitEmail = undefined
  }
  return cachedGitEmail
}

/** The owner the CLI claims: CRABBOX_OWNER, then the git author/committer email, then git config. */
function resolveOwner(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.CRABBOX_OWNER || env.GIT_AUTHOR_EMAIL || env.GIT_COMMITTER_EMAIL || gitEmail()
}

export function createBrokerClient(options: BrokerClientOptions): BrokerClient {
  const base = options.url.replace(/\/+$/, '')
  let owner: string | undefined | null = options.owner ?? null

  const authHeaders = ({ admin = false }: { admin?: boolean } = {}): Record<string, string> => {
    const headers: Record<string, string> = accessHeaders(options.access)
    const token = admin ? options.adminToken : options.token
    if (token) headers.authorization = `Bearer ${token}`
    if (owner === null) owner = resolveOwner()
    if (owner) headers['x-crabbox-owner'] = owner
    if (options.org) headers['x-crabbox-org'] = options.org
    return headers
  }

  async function send(method: string, path: string, request: BrokerRequestOptions<unknown>, accept: string): Promise<Response> {
    const admin = request.admin ?? false
    if (admin && !options.adminToken) {
      throw new CrabboxError(`${method} ${path} needs the broker admin token, and none is configured`, {
        exit: 'auth',
        hint: 'Set it with `crabbox config set-broker --url URL --admin-token-stdin` or CRABBOX_ADMIN_TOKEN.',
      })
    }
    const url = new URL(base + path)
    for (const [key, value] of Object.entries(request.query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value))
    const headers: Record<string, string> = { accept, ...authHeaders({ admin }) }
    if (request.body !== undefined) headers['content-type'] = 'application/json'
    const timeoutMs = request.timeoutMs ?? options.timeoutMs ?? defaultTimeoutMs
    const signals = [AbortSignal.timeout(timeoutMs), ...(request.signal ? [request.signal] : [])]
    const where = `${method} ${url.origin}${url.pathname}`
    let response: Response
    try {
      response = await fetch(url, {
        method,
        headers,
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
        signal: AbortSignal.any(signals),
      })
    } catch (error) {
      if (request.signal?.aborted) throw request.signal.reason ?? error
      const timedOut = (error as Error).name === 'TimeoutError'
      const reason = timedOut
        ? `timed out after ${timeoutMs} ms`
        : ((error as { cause?: Error }).cause?.message ?? (error as Error).message)
      throw new BrokerError(`cannot reach the broker: ${where}: ${reason}`, {
        status: 0,
        errorCode: timedOut ? 'timeout' : 'network',
        exit: 'error',
        hint: 'Check the broker URL and your network; `crabbox doctor` checks both.',
        cause: error,
      })
    }
    if (response.ok && !(response.redirected && ACCESS_LOGIN.test(response.url))) return response
    const text = await response.text().catch(() => '')
    const refused = accessRefusal(response, text, where, options.access)
    if (refused) throw refused
    let body: ErrorBody | undefined
    try {
      const parsed = v.safeParse(ErrorBody, JSON.parse(text))
      if (parsed.success) body = parsed.output
    } catch {
      // not JSON: fall back to the status line below
    }
    const errorCode = body?.error ?? `http_${response.status}`
    const detail = body ? (body.message ? `${body.error}: ${body.message}` : body.error) : text.slice(0, 200).trim() || response.statusText
    throw new BrokerError(`broker ${where}: http ${response.status}: ${detail}`, {
      status: response.status,
      errorCode,
      exit: exitFor(response.status, errorCode),
      hint: hintFor(response.status, errorCode, admin, () =>
        refusedToken(admin ? options.adminToken : options.token, admin ? options.adminTokenSource : options.tokenSource, admin),
      ),
    })
  }

  return {
    url: base,
    authHeaders,
    async request<T>(method: string, path: string, request: BrokerRequestOptions<T> = {}): Promise<T> {
      const response = await send(method, path, request as BrokerRequestOptions<unknown>, 'application/json')
      const text = await response.text()
      let data: unknown
      try {
        data = text === '' ? undefined : JSON.parse(text)
      } catch {
        throw new BrokerError(`broker ${method} ${path} replied with something that is not JSON`, {
          status: response.status,
          errorCode: 'invalid_reply',
          exit: 'error',
          hint: 'Is the broker URL right? `crabbox doctor` checks it.',
        })
      }
      if (!request.schema) return data as T
      const parsed = v.safeParse(request.schema, data)
      if (parsed.success) return parsed.output
      throw new BrokerError(`broker ${method} ${path} replied with an unexpected shape: ${describeIssues(parsed.issues)}`, {
        status: response.status,
        errorCode: 'invalid_reply',
        exit: 'error',
        hint: 'The broker and this CLI may be different versions; upgrade the older one.',
      })
    },
    async requestText(method, path, request = {}) {
      const response = await send(method, path, request, 'text/plain, */*')
      return response.text()
    },
  }
}

/** The broker part of the config (the transport takes values, it does not load config). */
const tokenWithoutUrl = (source: string | undefined) =>
  new CrabboxError(`a broker token is set${source ? ` (${source})` : ''} but no broker URL`, {
    exit: 'usage',
    code: 'config',
    hint: 'Set the URL with CRABBOX_COORDINATOR or broker.url (`crabbox config set-broker <url>`), or unset the token (CRABBOX_COORDINATOR_TOKEN or broker.token) to run without a broker.',
  })

export interface BrokerSettings {
  url?: string
  token?: string
  adminToken?: string
  access?: AccessCredentials
}

/**
 * The broker client for this config, or `undefined` in direct mode (no broker URL).
 * A token without a URL is a configuration error (exit 2), not direct mode: a CI job
 * that forgot the URL must not quietly run its tests on the CI host.
 */
export function brokerClient(
  config: { broker: BrokerSettings; sources?: Record<string, string> },
  env: NodeJS.ProcessEnv = process.env,
): BrokerClient | undefined {
  if (!config.broker.url) {
    if (config.broker.token) throw tokenWithoutUrl(config.sources?.['broker.token'])
    return undefined
  }
  return createBrokerClient({
    url: config.broker.url,
    token: config.broker.token,
    adminToken: config.broker.adminToken,
    access: config.broker.access,
    tokenSource: config.sources?.['broker.token'],
    adminTokenSource: config.sources?.['broker.adminToken'],
    owner: env.CRABBOX_OWNER || undefined,
    org: env.CRABBOX_ORG || undefined,
  })
}
