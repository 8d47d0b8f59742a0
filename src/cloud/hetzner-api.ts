import * as v from 'valibot'
import {
  CloudApiError,
  touchedLabels,
  type CloudClientOptions,
  type CloudErrorCategory,
  type CloudMachine,
  isLeaseKeyName,
  providerKeyName,
  sleep as realSleep,
  timedFetch,
  waitForAddress,
  withRetries,
} from './cloud-machines.js'

/**
 * Hetzner Cloud API client and the machine lifecycle built on it. Plain
 * `fetch(Request)`: the same code runs in the broker (workerd) and the CLI
 * (Node 20). The API speaks JSON bodies and answers errors as
 * `{"error":{"code","message","details"}}`.
 */

const HETZNER_API_URL = 'https://api.hetzner.cloud/v1'

const Labels = v.optional(v.record(v.string(), v.string()), {})
const ServerSchema = v.looseObject({
  id: v.number(),
  name: v.string(),
  status: v.string(),
  created: v.optional(v.string()),
  labels: Labels,
  public_net: v.optional(v.looseObject({ ipv4: v.nullish(v.looseObject({ ip: v.string() })) })),
  server_type: v.looseObject({ name: v.string() }),
  datacenter: v.nullish(v.looseObject({ location: v.looseObject({ name: v.string() }) })),
})
const SshKeySchema = v.looseObject({ id: v.number(), name: v.string(), public_key: v.string(), labels: Labels })
const Pagination = v.optional(v.looseObject({ pagination: v.optional(v.looseObject({ next_page: v.nullish(v.number()) })) }))
const ServerReply = v.looseObject({ server: ServerSchema })
const ServersReply = v.looseObject({ servers: v.array(ServerSchema), meta: Pagination })
const SshKeyReply = v.looseObject({ ssh_key: SshKeySchema })
const SshKeysReply = v.looseObject({ ssh_keys: v.array(SshKeySchema), meta: Pagination })
const Price = v.looseObject({
  location: v.string(),
  price_hourly: v.looseObject({ net: v.string(), gross: v.string() }),
})
const ServerTypesReply = v.looseObject({
  server_types: v.array(v.looseObject({ name: v.string(), prices: v.array(Price) })),
})
const ErrorReply = v.looseObject({ error: v.looseObject({ code: v.string(), message: v.string() }) })

export type HetznerServer = v.InferOutput<typeof ServerSchema>
export type HetznerSshKey = v.InferOutput<typeof SshKeySchema>

export interface HetznerOptions extends CloudClientOptions {
  token: string
  apiUrl?: string
}

/** Error codes from the Hetzner docs, mapped to what crabbox does about them. */
const categories: Record<string, CloudErrorCategory> = {
  rate_limit_exceeded: 'rate_limit',
  service_error: 'transient',
  unavailable: 'transient',
  maintenance: 'transient',
  timeout: 'transient',
  locked: 'transient',
  conflict: 'transient',
  resource_unavailable: 'capacity',
  placement_error: 'capacity',
  server_type_not_available: 'capacity',
  location_not_available: 'capacity',
  resource_limit_exceeded: 'quota',
  dedicated_core_limit: 'quota',
  not_found: 'not_found',
  uniqueness_error: 'conflict',
  unauthorized: 'auth',
  forbidden: 'auth',
  token_readonly: 'auth',
}

async function toError(response: Response, what: string): Promise<CloudApiError> {
  const text = await response.text().catch(() => '')
  let code = `http_${response.status}`
  let message = text.slice(0, 300) || response.statusText
  try {
    const parsed = v.safeParse(ErrorReply, JSON.parse(text))
    if (parsed.success) ({ code, message } = parsed.output.error)
  } catch {
    // not JSON: keep the raw text
  }
  let category = categories[code] ?? 'fatal'
  if (category === 'fatal' && response.status >= 500) category = 'transient'
  if (response.status === 429) category = 'rate_limit'
  return new CloudApiError('hetzner', category, code, `Hetzner ${what}: ${message} (${code})`, response.status)
}

export type HetznerApi = ReturnType<typeof createHetznerApi>

export function createHetznerApi(options: HetznerOptions) {
  const base = (options.apiUrl || HETZNER_API_URL).replace(/\/+$/, '')
  const fetchImpl = options.fetch ?? ((request: Request) => fetch(request))
  const timeoutMs = options.timeoutMs ?? 30_000

  async function call<S extends v.GenericSchema>(
    method: string,
    path: string,
    schema: S | undefined,
    body?: unknown,
  ): Promise<v.InferOutput<S>> {
    const request = new Request(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${options.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const response = await timedFetch('hetzner', fetchImpl, request, timeoutMs)
    if (!response.ok) throw await toError(response, `${method} ${path.split('?')[0]}`)
    if (!schema) {
      await response.body?.cancel()
      return undefined as v.InferOutput<S>
    }
    const parsed = v.safeParse(schema, await response.json().catch(() => undefined))
    if (!parsed.success)
      throw new CloudApiError(
        'hetzner',
        'transient',
        'bad_reply',
        `Hetzner ${method} ${path}: unexpected reply (${parsed.issues[0].message})`,
        response.status,
      )
    return parsed.output
  }

  async function paged<T>(path: string, pick: (page: number) => Promise<{ items: T[]; next?: number | null }>): Promise<T[]> {
    const all: T[] = []
    for (let page: number | null | undefined = 1; page;) {
      const result = await pick(page)
      all.push(...result.items)
      page = result.next
    }
    return all
  }

  return {
    getServer: async (id: string | number) => (await call('GET', `/servers/${id}`, ServerReply)).server,
    listServers: (labelSelector: string) =>
      paged('/servers', async (page) => {
        const reply = await call(
          'GET',
          `/servers?label_selector=${encodeURIComponent(labelSelector)}&per_page=50&page=${page}`,
          ServersReply,
        )
        return { items: reply.servers, next: reply.meta?.pagination?.next_page }
      }),
    createServer: async (body: Record<string, unknown>) => (await call('POST', '/servers', ServerReply, body)).server,
    deleteServer: (id: string | number) => call('DELETE', `/servers/${id}`, undefined),
    /** PUT replaces the whole label set. */
    updateServerLabels: async (id: string | number, labels: Record<string, string>) =>
      (await call('PUT', `/servers/${id}`, ServerReply, { labels })).server,
    findSshKey: async (name: string) => (await call('GET', `/ssh_keys?name=${encodeURIComponent(name)}`, SshKeysReply)).ssh_keys[0],
    listSshKeys: () =>
      paged('/ssh_keys', async (page) => {
        const reply = await call('GET', `/ssh_keys?per_page=50&page=${page}`, SshKeysReply)
        return { items: reply.ssh_keys, next: reply.meta?.pagination?.next_page }
      }),
    createSshKey: async (body: { name: string; public_key: string; labels: Record<string, string> }) =>
      (await call('POST', '/ssh_keys', SshKeyReply, body)).ssh_key,
    deleteSshKey: (id: number) => call('DELETE', `/ssh_keys/${id}`, undefined),
    serverType: async (name: string) =>
      (await call('GET', `/server_types?name=${encodeURIComponent(name)}`, ServerTypesReply)).server_types[0],
    options: {
      ...options,
      pollIntervalMs: options.pollIntervalMs ?? 2_000,
      addressTimeoutMs: options.addressTimeoutMs ?? 120_000,
      sleep: options.sleep ?? realSleep,
    },
  }
}

export function toCloudMachine(server: HetznerServer): CloudMachine {
  return {
    provider: 'hetzner',
    id: String(server.id),
    name: server.name,
    host: server.public_net?.ipv4?.ip || undefined,
    status: server.status,
    serverType: server.server_type.name,
    region: server.datacenter?.location.name,
    labels: server.labels,
    createdAt: server.created,
  }
}

const retry = { attempts: 5, delayMs: 1_000 }

/** The one machine carrying this lease's label, if any (also finds servers whose create reply was lost). */
export async function findHetznerMachine(api: HetznerApi, leaseId: string): Promise<CloudMachine | undefined> {
  const servers = await withRetries(() => api.listServers(`crabbox=true,lease=${leaseId}`), { ...retry, sleep: api.options.sleep })
  const live = servers.filter((s) => s.status !== 'deleting')
  return live[0] ? toCloudMachine(live[0]) : undefined
}

export async function listHetznerMachines(api: HetznerApi): Promise<CloudMachine[]> {
  return (await withRetries(() => api.listServers('crabbox=true'), { ...retry, sleep: api.options.sleep })).map(toCloudMachine)
}

/** Imports the lease key, or reuses the same key already stored under that name or another. */
async function ensureSshKey(api: HetznerApi, name: string, publicKey: string, labels: Record<string, string>): Promise<HetznerSshKey> {
  const wanted = publicKey.trim().split(/\s+/).slice(0, 2).join(' ')
  const same = (key: HetznerSshKey) => key.public_key.trim().split(/\s+/).slice(0, 2).join(' ') === wanted
  const existing = await api.findSshKey(name)
  if (existing) {
    if (same(existing)) return existing
    throw new CloudApiError('hetzner', 'conflict', 'uniqueness_error', `Hetzner SSH key ${name} already exists with a different public key`)
  }
  try {
    return await api.createSshKey({
      name,
      public_key: publicKey.trim(),
      labels: { crabbox: 'true', created_by: 'crabbox', lease: labels.lease ?? 'unknown' },
    })
  } catch (error) {
    // Hetzner refuses a second key with the same fingerprint: reuse the stored one (it is not ours to delete).
    if (!(error instanceof CloudApiError && error.category === 'conflict')) throw error
    const match = (await api.listSshKeys()).find(same) ?? (await api.findSshKey(name))
    if (!match) throw error
    return match
  }
}

export interface HetznerCreateInput {
  leaseId: string
  name: string
  labels: Record<string, string>
  serverTypes: string[]
  location: string
  image: string
  userData: string
  sshPublicKey: string
  keyName: string
}

export interface ProvisioningAttempt {
  serverType: string
  region?: string
  market?: 'spot' | 'on-demand'
  category: string
  message: string
}

export interface CreatedMachine {
  machine: CloudMachine
  attempts: ProvisioningAttempt[]
  /** True when an existing machine with this lease's label was adopted instead of created. */
  adopted: boolean
}

/** Polls until the server has a public IPv4 (adopted machines may still be booting). */
export function waitForHetznerAddress(api: HetznerApi, machine: CloudMachine): Promise<CloudMachine> {
  return waitForAddress(machine, api.options, `Hetzner server ${machine.name}`, async () =>
    toCloudMachine(await withRetries(() => api.getServer(machine.id), { ...retry, sleep: api.options.sleep })),
  )
}

/**
 * Creates the lease's server: adopts one already labelled with the lease
 * (retried or lost create), else imports the key and walks the candidate
 * types, falling back on capacity and quota errors. A create whose reply was
 * lost (timeout, 5xx, dropped connection) is looked up by label, never blindly
 * repeated, so a lease has at most one machine.
 */
export async function createHetznerMachine(api: HetznerApi, input: HetznerCreateInput): Promise<CreatedMachine> {
  const existing = await findHetznerMachine(api, input.leaseId)
  if (existing) return { machine: await waitForHetznerAddress(api, existing), attempts: [], adopted: true }

  const key = await withRetries(() => ensureSshKey(api, input.keyName, input.sshPublicKey, input.labels), {
    ...retry,
    sleep: api.options.sleep,
  })
  const attempts: ProvisioningAttempt[] = []
  try {
    for (const serverType of input.serverTypes) {
      for (let attempt = 1; ; attempt++) {
        try {
          const server = await api.createServer({
            name: input.name,
            server_type: serverType,
            image: input.image,
            location: input.location,
            labels: { ...input.labels, server_type: serverType },
            ssh_keys: [key.id],
            user_data: input.userData,
            start_after_create: true,
            public_net: { enable_ipv4: true, enable_ipv6: false },
          })
          return { machine: await waitForHetznerAddress(api, toCloudMachine(server)), attempts, adopted: false }
        } catch (error) {
          if (!(error instanceof CloudApiError)) throw error
          if (error.fallback) {
            attempts.push({ serverType, region: input.location, category: error.category, message: error.message })
            break
          }
          if (error.retryable || error.category === 'conflict') {
            // The create may have happened: look before trying again.
            const found = await findHetznerMachine(api, input.leaseId)
            if (found) return { machine: await waitForHetznerAddress(api, found), attempts, adopted: true }
            if (attempt < 4 && error.retryable) {
              await api.options.sleep(api.options.pollIntervalMs * attempt)
              continue
            }
          }
          throw error
        }
      }
    }
  } catch (error) {
    await deleteHetznerKey(api, input.keyName).catch(() => undefined)
    throw error
  }
  await deleteHetznerKey(api, input.keyName).catch(() => undefined)
  throw new CloudApiError(
    'hetzner',
    'capacity',
    'no_capacity',
    `no Hetzner capacity for ${input.serverTypes.join(', ')} in ${input.location}: ${attempts.map((a) => `${a.serverType}: ${a.message}`).join('; ')}`,
  )
}

/** Deletes a per-lease key by name; other names are never touched. Already gone is fine. */
async function deleteHetznerKey(api: HetznerApi, keyName: string): Promise<void> {
  if (!isLeaseKeyName(keyName)) return
  await withRetries(
    async () => {
      const key = await api.findSshKey(keyName)
      if (!key) return
      try {
        await api.deleteSshKey(key.id)
      } catch (error) {
        if (!(error instanceof CloudApiError && error.category === 'not_found')) throw error
      }
    },
    { ...retry, sleep: api.options.sleep },
  )
}

/**
 * Deletes the lease's server (by ID and by lease label, so a machine whose
 * create reply was lost goes too) and its per-lease key. Resolves only once the
 * provider has confirmed each delete or says the server is already gone.
 */
export async function deleteHetznerMachine(api: HetznerApi, target: { id?: string; leaseId: string; keyName?: string }): Promise<void> {
  const ids = new Set<string>()
  if (target.id) ids.add(target.id)
  for (const server of await withRetries(() => api.listServers(`crabbox=true,lease=${target.leaseId}`), {
    ...retry,
    sleep: api.options.sleep,
  }))
    ids.add(String(server.id))
  for (const id of ids) {
    await withRetries(
      async () => {
        try {
          await api.deleteServer(id)
        } catch (error) {
          if (!(error instanceof CloudApiError && error.category === 'not_found')) throw error
        }
      },
      { ...retry, sleep: api.options.sleep },
    )
  }
  await deleteHetznerKey(api, target.keyName ?? providerKeyName(target.leaseId))
}

/** Live hourly price in USD: gross EUR for the location (or the first listed) × the EUR→USD rate. */
export async function hetznerHourlyUSD(
  api: HetznerApi,
  serverType: string,
  location: string,
  eurToUsd: number,
): Promise<number | undefined> {
  const type = await withRetries(() => api.serverType(serverType), { ...retry, sleep: api.options.sleep })
  const price = type?.prices.find((p) => p.location === location) ?? type?.prices[0]
  const eur = Number(price?.price_hourly.gross)
  return price && Number.isFinite(eur) ? eur * eurToUsd : undefined
}

/** Heartbeat for a direct-mode lease: moves `expires_at` forward (never past the TTL). */
export async function touchHetznerMachine(api: HetznerApi, id: string, now = new Date()): Promise<void> {
  const server = await withRetries(() => api.getServer(id), { ...retry, sleep: api.options.sleep })
  const labels = touchedLabels(server.labels, now)
  if (labels) await withRetries(() => api.updateServerLabels(id, labels), { ...retry, sleep: api.options.sleep })
}
