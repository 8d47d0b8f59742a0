import { existsSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ServiceContext } from './context.js'
import { userConfigPath } from '../paths.js'
import { setUserConfigValues, updateUserConfig } from '../config/write.js'
import { CrabboxError, usageError } from '../errors.js'
import { GithubLoginPollResponse, GithubLoginStartResponse } from '../protocol/auth.js'
import { WhoamiResponse } from '../protocol/leases.js'
import { color } from '../ui/colors.js'
import { BrokerError, brokerClient, createBrokerClient, type BrokerClient } from '../transport/broker/client.js'
import { openUrl } from './open-url.js'

export interface Identity {
  owner: string
  org: string
  auth: string
  login?: string
  admin?: boolean
}

export interface LoginOptions {
  url?: string
  provider?: string
  /** A shared token (from `--token-stdin`); skips the browser flow. */
  token?: string
  /** Never try to open a browser; print the URL only. */
  noBrowser?: boolean
}

export interface LoginResult {
  config: string
  broker: string
  provider?: string
  identity: Identity
}

const noBrokerHint = 'Run `crabbox login --url https://your-broker` or `crabbox config set-broker --url URL`.'

function normalizeUrl(text: string): string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw usageError(`${JSON.stringify(text)} is not a broker URL`, 'Give the broker address, e.g. --url https://crabbox.example.com')
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw usageError(`broker URL must be http(s), got ${url.protocol}`)
  return url.href.replace(/\/+$/, '')
}

async function fetchIdentity(client: BrokerClient): Promise<Identity> {
  return client.request('GET', '/v1/whoami', { schema: WhoamiResponse, timeoutMs: 30_000 })
}

/** GitHub browser login: start, show/open the URL, poll until the broker hands over a user token. */
async function githubLogin(
  context: ServiceContext,
  broker: string,
  options: LoginOptions,
): Promise<{ broker: string; token: string; provider?: string }> {
  const secret = randomBytes(32).toString('hex')
  const pollSecretHash = createHash('sha256').update(secret).digest('hex')
  const start = async (base: string) =>
    createBrokerClient({ url: base, access: context.config.broker.access }).request('POST', '/v1/auth/github/start', {
      body: { pollSecretHash, ...(options.provider ? { provider: options.provider } : {}) },
      schema: GithubLoginStartResponse,
      timeoutMs: 30_000,
    })
  let started: GithubLoginStartResponse
  try {
    started = await start(broker)
  } catch (error) {
    if (error instanceof BrokerError && error.errorCode === 'github_oauth_not_configured') {
      throw new CrabboxError(`${broker} has no GitHub login: ${error.message}`, {
        exit: 'auth',
        hint: `Log in with the broker's shared token instead: printf '%s\\n' "$TOKEN" | crabbox login --url ${broker} --token-stdin`,
        cause: error,
      })
    }
    throw error
  }
  // Never follow the origin a login names: whoever answers could send the token elsewhere.
  const redirect = new URL(started.url).searchParams.get('redirect_uri')
  const named = redirect && URL.canParse(redirect) ? new URL(redirect).origin : redirect
  if (named && named !== new URL(broker).origin) {
    throw new CrabboxError(`the broker at ${broker} hands out logins for ${named}, not for itself`, {
      exit: 'auth',
      hint: `If ${named} is your broker's public address, log in there: crabbox login --url ${named}`,
    })
  }
  // Before the browser opens: the broker's page asks for this code once GitHub approves.
  if (started.userCode)
    context.progress.info(`Confirm the code ${color.bold(started.userCode)} in your browser when the broker's page asks.`)
  const opened = !options.noBrowser && openUrl(started.url)
  context.progress.info(
    `${opened ? 'Opened your browser to log in with GitHub. If it did not open, visit' : 'Open this URL to log in with GitHub:'}\n  ${started.url}`,
  )
  context.progress.phase('waiting for GitHub login')
  const client = createBrokerClient({ url: broker, access: context.config.broker.access })
  const deadline = Math.min(Date.parse(started.expiresAt) || Infinity, Date.now() + 10 * 60_000)
  while (Date.now() < deadline) {
    let reply: GithubLoginPollResponse
    try {
      reply = await client.request('POST', '/v1/auth/github/poll', {
        body: { loginID: started.loginID, pollSecret: secret },
        schema: GithubLoginPollResponse,
        timeoutMs: 30_000,
      })
    } catch (error) {
      if (error instanceof BrokerError && (error.status === 410 || error.status === 400 || error.status === 403)) {
        context.progress.done()
        throw new CrabboxError(`GitHub login ${error.status === 410 ? 'expired' : 'failed'}: ${error.message}`, {
          exit: 'auth',
          hint: 'Run `crabbox login` again; ask a broker admin if your GitHub account should have access.',
        })
      }
      throw error
    }
    if (reply.status === 'complete') {
      context.progress.done(`logged in as ${reply.login} (${reply.owner}, org ${reply.org})`)
      return { broker, token: reply.token, provider: reply.provider }
    }
    await sleep(2000)
  }
  context.progress.done()
  throw new CrabboxError('GitHub login expired before it completed', {
    exit: 'auth',
    hint: 'Run `crabbox login` again, approve in the browser and confirm the code before the login expires (5 minutes).',
  })
}

/**
 * Logs in and stores `broker.url`, `broker.token` (and the provider when one
 * is chosen) in the user config. A shared token is verified before it is
 * stored, so a typo never replaces a working token.
 */
export async function login(context: ServiceContext, options: LoginOptions): Promise<LoginResult> {
  const url = options.url ?? context.config.broker.url
  if (!url) throw usageError('no broker URL: pass --url', noBrokerHint)
  let broker = normalizeUrl(url)
  let token: string
  let provider = options.provider
  if (options.token !== undefined) {
    token = options.token
  } else {
    const result = await githubLogin(context, broker, options)
    broker = result.broker
    token = result.token
    provider ??= result.provider
  }
  const identity = await fetchIdentity(
    createBrokerClient({ url: broker, token, org: process.env.CRABBOX_ORG || undefined, access: context.config.broker.access }),
  )
  const values: Record<string, string> = { 'broker.url': broker, 'broker.token': token }
  if (provider) Object.assign(values, { 'broker.provider': provider, provider })
  const config = await setUserConfigValues(values)
  return { config, broker, provider, identity }
}

export interface LogoutResult {
  config: string
  broker?: string
  /** False when there was no stored token to remove. */
  removed: boolean
}

/** Forgets the stored broker token (and the legacy `coordinatorToken`); keeps URL and provider. */
export async function logout(context: ServiceContext): Promise<LogoutResult> {
  const path = userConfigPath()
  const result = { config: path, broker: context.config.broker.url, removed: false }
  if (!existsSync(path)) return result
  await updateUserConfig((doc) => {
    for (const key of [['broker', 'token'], ['coordinatorToken']]) {
      if (doc.hasIn(key)) result.removed = true
      doc.deleteIn(key)
    }
  }, path)
  return result
}

export interface WhoamiResult extends Identity {
  broker: string
}

export async function whoami(context: ServiceContext): Promise<WhoamiResult> {
  const client = brokerClient(context.config)
  if (!client) throw usageError('no broker configured, so there is no identity to show', noBrokerHint)
  return { ...(await fetchIdentity(client)), broker: client.url }
}
