/**
 * Azure Resource Manager over plain REST: a client-credentials token cached
 * until shortly before it expires, JSON calls with ARM's error body
 * (`{"error":{"code","message"}}`) and request ID, and long-running operations
 * (201/202 + `Azure-AsyncOperation` or `Location`) polled with a bound.
 * Shared infrastructure (resource group, VNet, subnet, NSG) is only ever
 * changed when it carries the `managed_by=crabbox` tag.
 */
import {
  CloudApiError,
  type CloudClientOptions,
  type CloudErrorCategory,
  type CloudMachine,
  sleep as realSleep,
  timedFetch,
} from './cloud-machines.js'

export const AZURE_ARM_URL = 'https://management.azure.com'
export const AZURE_LOGIN_URL = 'https://login.microsoftonline.com'
const API = { resources: '2021-04-01', network: '2023-09-01', compute: '2024-03-01' }

export interface AzureOptions extends CloudClientOptions {
  tenantId: string
  clientId: string
  clientSecret: string
  subscriptionId: string
  endpoint?: string
  loginEndpoint?: string
  /** Bound on one long-running operation (default 20 min). */
  operationTimeoutMs?: number
}

/** ARM error codes, mapped to what crabbox does about them. */
const categories: Record<string, CloudErrorCategory> = {
  SkuNotAvailable: 'capacity',
  AllocationFailed: 'capacity',
  ZonalAllocationFailed: 'capacity',
  OverconstrainedAllocationRequest: 'capacity',
  OverconstrainedZonalAllocationRequest: 'capacity',
  SpotVMCapacityNotAvailable: 'capacity',
  QuotaExceeded: 'quota',
  InvalidTemplateDeployment: 'unsupported',
  NicInUse: 'conflict',
  InUseNicCannotBeDeleted: 'conflict',
  PublicIPAddressInUse: 'conflict',
  InUsePublicIpAddressCannotBeDeleted: 'conflict',
  AnotherOperationInProgress: 'conflict',
  OperationPreempted: 'transient',
  RetryableError: 'transient',
  InternalServerError: 'transient',
  ResourceNotFound: 'not_found',
  NotFound: 'not_found',
  ResourceGroupNotFound: 'not_found',
  AuthenticationFailed: 'auth',
  AuthorizationFailed: 'auth',
  InvalidAuthenticationToken: 'auth',
  ExpiredAuthenticationToken: 'auth',
  invalid_client: 'auth',
  unauthorized_client: 'auth',
}

/** Delete errors that mean "something still uses it": wait and try again. */
const DEPENDENCY_CODES = new Set(['NicInUse', 'InUseNicCannotBeDeleted', 'PublicIPAddressInUse', 'InUsePublicIpAddressCannotBeDeleted'])

export function azureError(status: number, code: string, message: string, requestId?: string): CloudApiError {
  let category = categories[code] ?? 'fatal'
  // ARM reports a core-quota refusal as OperationNotAllowed with "quota" in the message.
  if (code === 'OperationNotAllowed' && /quota/i.test(message)) category = 'quota'
  if (category === 'fatal' && status >= 500) category = 'transient'
  if (status === 429) category = 'rate_limit'
  if (category === 'fatal' && (status === 401 || status === 403)) category = 'auth'
  if (category === 'fatal' && status === 404) category = 'not_found'
  const id = requestId ? `, request ${requestId}` : ''
  return new CloudApiError('azure', category, code, `Azure: ${message} (${code}${id})`, status)
}

async function toError(response: Response): Promise<CloudApiError> {
  const text = await response.text().catch(() => '')
  let code = `http_${response.status}`
  let message = text.slice(0, 300) || response.statusText
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } | string; error_description?: string }
    if (typeof body.error === 'object' && body.error?.code) ({ code, message = code } = body.error as { code: string; message?: string })
    else if (typeof body.error === 'string') [code, message] = [body.error, body.error_description ?? body.error]
  } catch {
    // not JSON: keep the raw text
  }
  return azureError(response.status, code, message, response.headers.get('x-ms-request-id') ?? undefined)
}

/** Client-credentials token, reused until five minutes before it expires. */
export function tokenSource(
  options: AzureOptions,
  fetchImpl: (request: Request) => Promise<Response>,
  timeoutMs: number,
): () => Promise<string> {
  const login = (options.loginEndpoint || AZURE_LOGIN_URL).replace(/\/+$/, '')
  let token: { value: string; until: number } | undefined
  return async () => {
    if (token && Date.now() < token.until) return token.value
    const request = new Request(`${login}/${encodeURIComponent(options.tenantId)}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: options.clientId,
        client_secret: options.clientSecret,
        scope: `${AZURE_ARM_URL}/.default`,
      }).toString(),
    })
    const response = await timedFetch('azure', fetchImpl, request, timeoutMs)
    if (!response.ok) throw await toError(response)
    const body = (await response.json()) as { access_token?: string; expires_in?: number | string }
    if (!body.access_token) throw new CloudApiError('azure', 'auth', 'no_token', 'Azure: the token endpoint returned no access token')
    const lifetime = Number(body.expires_in) || 3600
    token = { value: body.access_token, until: Date.now() + Math.max(0, lifetime - 300) * 1000 }
    return token.value
  }
}

export type Json = Record<string, unknown>
export type AzureApi = ReturnType<typeof createAzureApi>

export function createAzureApi(options: AzureOptions) {
  const arm = (options.endpoint || AZURE_ARM_URL).replace(/\/+$/, '')
  const fetchImpl = options.fetch ?? ((request: Request) => fetch(request))
  const timeoutMs = options.timeoutMs ?? 30_000
  const pollIntervalMs = options.pollIntervalMs ?? 5_000
  const operationTimeoutMs = options.operationTimeoutMs ?? 20 * 60_000
  const wait = options.sleep ?? realSleep

  const accessToken = tokenSource(options, fetchImpl, timeoutMs)

  async function send(method: string, url: string, body?: unknown): Promise<Response> {
    const request = new Request(url, {
      method,
      headers: {
        authorization: `Bearer ${await accessToken()}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return timedFetch('azure', fetchImpl, request, timeoutMs)
  }

  const retryAfter = (response: Response) => {
    const seconds = Number(response.headers.get('retry-after'))
    return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1000, pollIntervalMs * 4) : pollIntervalMs
  }

  /** Follows a long-running operation to its end; a failed operation becomes its error. */
  async function settle(response: Response, what: string): Promise<void> {
    const asyncUrl = response.headers.get('azure-asyncoperation')
    const locationUrl = response.headers.get('location')
    await response.body?.cancel()
    if (!asyncUrl && !locationUrl) return
    const deadline = Date.now() + operationTimeoutMs
    let pause = retryAfter(response)
    for (;;) {
      if (Date.now() + pause > deadline)
        throw new CloudApiError(
          'azure',
          'transient',
          'timeout',
          `Azure: ${what} did not finish within ${Math.round(operationTimeoutMs / 1000)} s`,
        )
      await wait(pause)
      const poll = await send('GET', asyncUrl ?? locationUrl!)
      if (!poll.ok) throw await toError(poll)
      pause = retryAfter(poll)
      if (!asyncUrl) {
        await poll.body?.cancel()
        if (poll.status !== 202) return
        continue
      }
      const status = (await poll.json().catch(() => ({}))) as { status?: string; error?: { code?: string; message?: string } }
      if (status.status === 'Succeeded') return
      if (status.status === 'Failed' || status.status === 'Canceled') {
        const code = status.error?.code ?? status.status
        throw azureError(
          409,
          code,
          status.error?.message ?? `${what} ${status.status.toLowerCase()}`,
          poll.headers.get('x-ms-request-id') ?? undefined,
        )
      }
    }
  }

  const url = (path: string, version: string) => `${arm}${path}${path.includes('?') ? '&' : '?'}api-version=${version}`

  return {
    subscriptionId: options.subscriptionId,
    /** GET a resource; undefined when ARM says it does not exist. */
    async get(path: string, version: string): Promise<Json | undefined> {
      const response = await send('GET', url(path, version))
      if (response.status === 404) {
        await response.body?.cancel()
        return undefined
      }
      if (!response.ok) throw await toError(response)
      return (await response.json()) as Json
    },
    /** Every item of a collection, following `nextLink`. */
    async list(path: string, version: string): Promise<Json[]> {
      const items: Json[] = []
      for (let next: string | undefined = url(path, version); next;) {
        const response = await send('GET', next)
        if (response.status === 404) {
          await response.body?.cancel()
          return items
        }
        if (!response.ok) throw await toError(response)
        const page = (await response.json()) as { value?: Json[]; nextLink?: string }
        items.push(...(page.value ?? []))
        next = page.nextLink
      }
      return items
    },
    /** PUT or PATCH, then waits for the operation and returns the resource as it now is. */
    async put(path: string, version: string, body: Json, method: 'PUT' | 'PATCH' = 'PUT'): Promise<Json> {
      const response = await send(method, url(path, version), body)
      if (!response.ok) throw await toError(response)
      if (response.status === 200 && !response.headers.get('azure-asyncoperation')) return (await response.json()) as Json
      await settle(response, `${method} ${path.split('/').pop()}`)
      const response2 = await send('GET', url(path, version))
      if (!response2.ok) throw await toError(response2)
      return (await response2.json()) as Json
    },
    /** DELETE and wait until ARM confirms it; already gone is fine. */
    async delete(path: string, version: string): Promise<void> {
      const response = await send('DELETE', url(path, version))
      if (response.status === 404 || response.status === 204) return void (await response.body?.cancel())
      if (!response.ok) throw await toError(response)
      await settle(response, `DELETE ${path.split('/').pop()}`)
    },
    options: { pollIntervalMs, sleep: wait },
  }
}

export const apiVersions = API

/** `sub/rg` resource paths. */
export const groupPath = (api: AzureApi, group: string) => `/subscriptions/${api.subscriptionId}/resourceGroups/${group}`
export const networkPath = (api: AzureApi, group: string, type: string, name: string) =>
  `${groupPath(api, group)}/providers/Microsoft.Network/${type}/${name}`
export const computePath = (api: AzureApi, group: string, type: string, name: string) =>
  `${groupPath(api, group)}/providers/Microsoft.Compute/${type}/${name}`

export const isDependencyError = (error: unknown): boolean => error instanceof CloudApiError && DEPENDENCY_CODES.has(error.code)

export const tagsOf = (resource: Json | undefined) => (resource?.tags ?? {}) as Record<string, string>
export const props = (resource: Json | undefined) => (resource?.properties ?? {}) as Json

/** A VM (plus its public IP address, when known) as crabbox sees cloud machines. */
export function toAzureMachine(vm: Json, host?: string): CloudMachine {
  const properties = props(vm)
  const state = String(properties.provisioningState ?? 'Unknown')
  const status = state === 'Succeeded' ? 'running' : state === 'Creating' || state === 'Updating' ? 'starting' : state.toLowerCase()
  return {
    provider: 'azure',
    id: String(vm.name),
    name: String(vm.name),
    host: host || undefined,
    status,
    serverType: String((properties.hardwareProfile as Json | undefined)?.vmSize ?? ''),
    region: typeof vm.location === 'string' ? vm.location : undefined,
    market: properties.priority === 'Spot' ? 'spot' : 'on-demand',
    labels: tagsOf(vm),
    ...(typeof properties.timeCreated === 'string' ? { createdAt: properties.timeCreated } : {}),
  }
}
