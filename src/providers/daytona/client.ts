import type { Daytona, DaytonaConfig } from '@daytonaio/sdk'
import type { Config } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'

/** The first set variable of `names` (the `CRABBOX_`-prefixed one first), with its name. */
function pick(env: NodeJS.ProcessEnv, ...names: string[]): string | undefined {
  for (const name of names) if (env[name]) return env[name]
  return undefined
}

/**
 * Daytona credentials from the environment: an API key, or a JWT with its organization.
 * Missing credentials are exit 3 naming the variable.
 */
export function daytonaCredentials(env: NodeJS.ProcessEnv): Pick<DaytonaConfig, 'apiKey' | 'jwtToken' | 'organizationId'> {
  const apiKey = pick(env, 'CRABBOX_DAYTONA_API_KEY', 'DAYTONA_API_KEY')
  if (apiKey) return { apiKey }
  const jwtToken = pick(env, 'CRABBOX_DAYTONA_JWT_TOKEN', 'DAYTONA_JWT_TOKEN')
  const organizationId = pick(env, 'CRABBOX_DAYTONA_ORGANIZATION_ID', 'DAYTONA_ORGANIZATION_ID')
  if (jwtToken && organizationId) return { jwtToken, organizationId }
  if (jwtToken)
    throw new CrabboxError('DAYTONA_ORGANIZATION_ID is not set (a Daytona JWT needs its organization)', {
      exit: 'auth',
      code: 'missing_credentials',
      hint: 'set DAYTONA_ORGANIZATION_ID (or CRABBOX_DAYTONA_ORGANIZATION_ID), or use DAYTONA_API_KEY',
    })
  throw new CrabboxError('DAYTONA_API_KEY is not set', {
    exit: 'auth',
    code: 'missing_credentials',
    hint: 'create an API key in the Daytona dashboard and export DAYTONA_API_KEY (or CRABBOX_DAYTONA_API_KEY)',
  })
}

/** The SDK version the provider is built and tested against (an optional peer of crabbox). */
export const DAYTONA_SDK = '@daytonaio/sdk@^0.218.0'

/**
 * The Daytona SDK, which crabbox does not install itself: it brings ≈ 75 MB of dependencies
 * (OpenTelemetry, the AWS S3 client) that only Daytona users need. Missing, it is exit 3 naming
 * the install.
 */
export async function loadSdk(load: () => Promise<typeof import('@daytonaio/sdk')> = () => import('@daytonaio/sdk')) {
  try {
    return await load()
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') throw error
    throw new CrabboxError('the daytona provider needs the Daytona SDK, which is not installed', {
      exit: 'auth',
      code: 'missing_dependency',
      hint: `install it beside crabbox: npm install -g ${DAYTONA_SDK} (or npm install ${DAYTONA_SDK} in a project)`,
    })
  }
}

/** A Daytona SDK client for the configured endpoint (state is polled: no event socket is opened). */
export async function daytonaClient(config: Config): Promise<Daytona> {
  const credentials = daytonaCredentials(process.env)
  const { Daytona } = await loadSdk()
  return new Daytona({
    ...credentials,
    apiUrl: config.daytona.apiUrl,
    target: config.daytona.target,
    useDeprecatedPolling: true,
  })
}

interface SdkError {
  message?: string
  statusCode?: number
  headers?: Record<string, unknown>
}

/** A Daytona API failure as a CrabboxError: the provider's own message, HTTP status and request ID. */
export function daytonaError(what: string, error: unknown, exit: 'provisioning' | 'error' = 'error'): CrabboxError {
  if (error instanceof CrabboxError) return error
  const e = (error ?? {}) as SdkError
  const status = e.statusCode
  const header = e.headers?.['x-request-id'] ?? e.headers?.['X-Request-Id']
  const requestId = typeof header === 'string' && header ? ` (request id ${header})` : ''
  const auth = status === 401 || status === 403
  return new CrabboxError(`daytona ${what} failed${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(error)}${requestId}`, {
    exit: auth ? 'auth' : exit,
    code: auth ? 'daytona_auth' : 'daytona_api',
    hint: auth ? 'check DAYTONA_API_KEY (or DAYTONA_JWT_TOKEN and DAYTONA_ORGANIZATION_ID)' : undefined,
    cause: error,
  })
}

/** Runs one SDK call, reporting its failure as `daytonaError`. */
export async function api<T>(what: string, call: () => Promise<T>, exit: 'provisioning' | 'error' = 'error'): Promise<T> {
  try {
    return await call()
  } catch (error) {
    throw daytonaError(what, error, exit)
  }
}

export const isNotFound = (error: unknown) => (error as SdkError | undefined)?.statusCode === 404
