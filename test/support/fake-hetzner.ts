/**
 * A fake Hetzner Cloud API: the calls crabbox makes, with the documented wire
 * format (JSON, `{"error":{"code","message","details"}}`, label selectors,
 * pagination meta, RateLimit-* headers) and switches to inject failures.
 *
 * It is a plain `(Request) => Promise<Response>` handler, so the same fake is
 * called directly as `fetch` inside workerd and served on loopback for the CLI
 * (`serveFake`). No Node imports at module level.
 *
 * Checked against https://docs.hetzner.cloud/ (Errors, Pagination, Label
 * Selector, Rate Limiting; Servers: create/get/list/delete; SSH Keys;
 * Server Types prices), not against crabbox's client.
 */
import { asFetch, faultSwitch, type FaultSpec } from './fake-faults.js'

export { DropConnection, serveFake, type FailureKind, type ServedFake } from './fake-faults.js'

export interface Failure extends FaultSpec {
  method?: string
  /** Matches the path (without `/v1` and query), e.g. `/servers` or /^\/servers\/\d+$/. */
  path: string | RegExp
  /** Only for requests whose JSON body satisfies this (e.g. a given server_type). */
  when?: (body: Record<string, unknown>) => boolean
}

export interface RecordedCall {
  method: string
  path: string
  query: string
  body?: Record<string, unknown>
}

interface FakeServer {
  id: number
  name: string
  status: string
  created: string
  labels: Record<string, string>
  server_type: string
  image: string
  location: string
  ssh_keys: number[]
  user_data: string
  ip?: string
  gets: number
}

interface FakeKey {
  id: number
  name: string
  public_key: string
  fingerprint: string
  labels: Record<string, string>
  created: string
}

export interface FakeHetznerOptions {
  token?: string
  /** The public IPv4 a new server gets; default 203.0.113.<n>. */
  addressFor?: (server: { id: number; name: string; user_data: string; server_type: string }) => string
  /** GETs of a new server before it has an address and is running (default 1). */
  bootPolls?: number
  /**
   * Boot by the clock instead: a new server has its address in the create reply (as Hetzner's do) and
   * reports `initializing` for the first half of this many ms, `starting` for the second, then `running`.
   */
  bootMs?: number
  /** Types with no capacity in any location (`resource_unavailable`). */
  unavailableTypes?: string[]
  /** Called after a server is created, e.g. to turn the user data into a real test host. */
  onCreate?: (server: { id: number; name: string; user_data: string; labels: Record<string, string> }) => void | Promise<void>
}

const hourlyEUR: Record<string, string> = {
  cx53: '0.0280',
  cpx62: '0.0570',
  ccx33: '0.0760',
  ccx43: '0.1520',
  ccx53: '0.3040',
  ccx63: '0.4560',
}
const locations = ['fsn1', 'nbg1', 'hel1']

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    headers: {
      'content-type': 'application/json',
      'ratelimit-limit': '3600',
      'ratelimit-remaining': '3599',
      'ratelimit-reset': '1',
      ...headers,
    },
  })
const apiError = (status: number, code: string, message: string, details: unknown = {}) =>
  json(status, { error: { code, message, details } })

/** Hetzner label selectors: comma-separated `k=v`, `k!=v`, `k` and `!k`. */
function matchesSelector(labels: Record<string, string>, selector: string | null): boolean {
  if (!selector) return true
  return selector.split(',').every((term) => {
    const t = term.trim()
    if (t.startsWith('!')) return !(t.slice(1) in labels)
    const ne = t.split('!=')
    if (ne.length === 2) return labels[ne[0]] !== ne[1]
    const eq = t.split('=')
    if (eq.length === 2) return labels[eq[0]] === eq[1]
    return t in labels
  })
}

function paginate<T>(items: T[], url: URL): { items: T[]; meta: unknown } {
  const perPage = Math.min(Number(url.searchParams.get('per_page') ?? 25) || 25, 50)
  const page = Math.max(Number(url.searchParams.get('page') ?? 1) || 1, 1)
  const lastPage = Math.max(1, Math.ceil(items.length / perPage))
  return {
    items: items.slice((page - 1) * perPage, page * perPage),
    meta: {
      pagination: {
        page,
        per_page: perPage,
        previous_page: page > 1 ? page - 1 : null,
        next_page: page < lastPage ? page + 1 : null,
        last_page: lastPage,
        total_entries: items.length,
      },
    },
  }
}

// eslint-disable-next-line max-lines-per-function -- one closure holds the fake cloud's state and every route it speaks
export function createFakeHetzner(options: FakeHetznerOptions = {}) {
  const token = options.token ?? 'test-hcloud-token'
  const servers = new Map<number, FakeServer>()
  const keys = new Map<number, FakeKey>()
  const calls: RecordedCall[] = []
  const faults = faultSwitch<Failure>()
  const unavailable = new Set(options.unavailableTypes ?? [])
  // IDs differ between fake instances, like a real account's: stale references never hit a new fake's objects.
  let nextId = 1000 + Math.floor(Math.random() * 1_000_000) * 100

  // `bootMs`: the status moves on with the clock, and every reply shows where it is.
  const advance = (s: FakeServer) => {
    if (options.bootMs === undefined || (s.status !== 'initializing' && s.status !== 'starting')) return
    const age = Date.now() - Date.parse(s.created)
    s.status = age >= options.bootMs ? 'running' : age >= options.bootMs / 2 ? 'starting' : 'initializing'
  }
  const serverJson = (s: FakeServer) => {
    advance(s)
    return serverReply(s)
  }
  const serverReply = (s: FakeServer) => ({
    id: s.id,
    name: s.name,
    status: s.status,
    created: s.created,
    labels: s.labels,
    public_net: {
      ipv4: s.ip ? { id: s.id + 1, ip: s.ip, blocked: false, dns_ptr: `static.${s.ip}.clients.your-server.de` } : null,
      ipv6: null,
      floating_ips: [],
      firewalls: [],
    },
    server_type: { id: 1, name: s.server_type, description: s.server_type.toUpperCase(), cores: 8, memory: 32, disk: 240, prices: [] },
    datacenter: { id: 1, name: `${s.location}-dc14`, location: { id: 1, name: s.location, city: 'Falkenstein', country: 'DE' } },
    image: { id: 1, name: s.image, type: 'system', os_flavor: 'ubuntu' },
    private_net: [],
    protection: { delete: false, rebuild: false },
  })
  const keyJson = (k: FakeKey) => ({ ...k })
  const action = (command: string, resourceId: number, type: string) => ({
    id: nextId++,
    command,
    status: 'running',
    progress: 0,
    started: new Date().toISOString(),
    finished: null,
    resources: [{ id: resourceId, type }],
    error: null,
  })

  // eslint-disable-next-line max-lines-per-function -- one branch per Hetzner route the fake answers, each a few lines
  async function route(method: string, path: string, url: URL, body: Record<string, unknown>): Promise<Response> {
    if (path === '/ssh_keys' && method === 'GET') {
      const name = url.searchParams.get('name')
      const list = [...keys.values()].filter(
        (k) => (name === null || k.name === name) && matchesSelector(k.labels, url.searchParams.get('label_selector')),
      )
      const page = paginate(list.map(keyJson), url)
      return json(200, { ssh_keys: page.items, meta: page.meta })
    }
    if (path === '/ssh_keys' && method === 'POST') {
      const name = String(body.name ?? '')
      const publicKey = String(body.public_key ?? '').trim()
      if (!name || !/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-\S+) [A-Za-z0-9+/=]+/.test(publicKey))
        return apiError(400, 'invalid_input', 'invalid input in fields name, public_key', {
          fields: [{ name: 'public_key', messages: ['invalid public key'] }],
        })
      const fingerprint = publicKey.split(/\s+/)[1]
      if ([...keys.values()].some((k) => k.name === name))
        return apiError(409, 'uniqueness_error', 'SSH key with the same name already exists', { fields: [{ name: 'name' }] })
      if ([...keys.values()].some((k) => k.fingerprint === fingerprint))
        return apiError(409, 'uniqueness_error', 'SSH key with the same fingerprint already exists', { fields: [{ name: 'public_key' }] })
      const key: FakeKey = {
        id: nextId++,
        name,
        public_key: publicKey,
        fingerprint,
        labels: (body.labels as Record<string, string>) ?? {},
        created: new Date().toISOString(),
      }
      keys.set(key.id, key)
      return json(201, { ssh_key: keyJson(key) })
    }
    const keyMatch = /^\/ssh_keys\/(\d+)$/.exec(path)
    if (keyMatch && method === 'DELETE') {
      if (!keys.delete(Number(keyMatch[1]))) return apiError(404, 'not_found', `ssh_key with ID ${keyMatch[1]} not found`)
      return json(204, null)
    }
    if (path === '/servers' && method === 'GET') {
      const name = url.searchParams.get('name')
      const list = [...servers.values()].filter(
        (s) => (name === null || s.name === name) && matchesSelector(s.labels, url.searchParams.get('label_selector')),
      )
      const page = paginate(list.map(serverJson), url)
      return json(200, { servers: page.items, meta: page.meta })
    }
    if (path === '/servers' && method === 'POST') {
      const missing = ['name', 'server_type', 'image'].filter((f) => typeof body[f] !== 'string' || !body[f])
      if (missing.length)
        return apiError(400, 'invalid_input', `invalid input in fields ${missing.join(', ')}`, {
          fields: missing.map((name) => ({ name, messages: ['Missing data for required field.'] })),
        })
      const type = String(body.server_type)
      if (!(type in hourlyEUR))
        return apiError(400, 'invalid_input', `server type ${type} not found`, { fields: [{ name: 'server_type' }] })
      const location = String(body.location ?? 'fsn1')
      if (!locations.includes(location))
        return apiError(400, 'invalid_input', `location ${location} not found`, { fields: [{ name: 'location' }] })
      if ([...servers.values()].some((s) => s.name === body.name))
        return apiError(409, 'uniqueness_error', 'server name is already used', { fields: [{ name: 'name' }] })
      if (unavailable.has(type)) return apiError(503, 'resource_unavailable', `server type ${type} is unavailable in ${location}`)
      const sshKeys = (body.ssh_keys as Array<number | string> | undefined) ?? []
      for (const key of sshKeys)
        if (![...keys.values()].some((k) => k.id === Number(key) || k.name === key))
          return apiError(404, 'not_found', `ssh_key ${key} not found`)
      const id = nextId++
      const server: FakeServer = {
        id,
        name: String(body.name),
        status: 'initializing',
        created: new Date().toISOString(),
        labels: (body.labels as Record<string, string>) ?? {},
        server_type: type,
        image: String(body.image),
        location,
        ssh_keys: sshKeys.map(Number),
        user_data: String(body.user_data ?? ''),
        gets: 0,
      }
      if (options.bootMs !== undefined) server.ip = options.addressFor?.(server) ?? `203.0.113.${(id % 200) + 1}`
      servers.set(id, server)
      await options.onCreate?.({ id, name: server.name, user_data: server.user_data, labels: server.labels })
      if ((options.bootPolls ?? 1) <= 0 && options.bootMs === undefined) boot(server)
      return json(201, {
        server: serverJson(server),
        action: action('create_server', id, 'server'),
        next_actions: [action('start_server', id, 'server')],
        root_password: null,
      })
    }
    const serverMatch = /^\/servers\/(\d+)$/.exec(path)
    if (serverMatch) {
      const server = servers.get(Number(serverMatch[1]))
      if (!server) return apiError(404, 'not_found', `server with ID ${serverMatch[1]} not found`)
      if (method === 'GET') {
        if (++server.gets >= (options.bootPolls ?? 1) && options.bootMs === undefined) boot(server)
        return json(200, { server: serverJson(server) })
      }
      if (method === 'PUT') {
        if (typeof body.name === 'string') server.name = body.name
        if (body.labels && typeof body.labels === 'object') server.labels = body.labels as Record<string, string>
        return json(200, { server: serverJson(server) })
      }
      if (method === 'DELETE') {
        servers.delete(server.id)
        return json(200, { action: action('delete_server', server.id, 'server') })
      }
    }
    if (path === '/server_types' && method === 'GET') {
      const name = url.searchParams.get('name')
      const types = Object.entries(hourlyEUR)
        .filter(([n]) => name === null || n === name)
        .map(([n, eur], i) => ({
          id: i + 1,
          name: n,
          description: n.toUpperCase(),
          cores: 8,
          memory: 32,
          disk: 240,
          cpu_type: n.startsWith('ccx') ? 'dedicated' : 'shared',
          architecture: 'x86',
          prices: locations.map((location) => ({
            location,
            price_hourly: { net: eur, gross: (Number(eur) * 1.19).toFixed(4) },
            price_monthly: { net: (Number(eur) * 720).toFixed(4), gross: (Number(eur) * 720 * 1.19).toFixed(4) },
          })),
        }))
      return json(200, {
        server_types: types,
        meta: { pagination: { page: 1, per_page: 50, previous_page: null, next_page: null, last_page: 1, total_entries: types.length } },
      })
    }
    return apiError(404, 'not_found', `no route for ${method} ${path}`)
  }

  function boot(server: FakeServer) {
    server.ip ??= options.addressFor?.(server) ?? `203.0.113.${(server.id % 200) + 1}`
    server.status = 'running'
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url)
    const path = url.pathname.replace(/^\/v1/, '')
    const text = request.method === 'GET' || request.method === 'DELETE' ? '' : await request.text()
    let body: Record<string, unknown> = {}
    if (text) {
      try {
        body = JSON.parse(text)
      } catch {
        return apiError(400, 'json_error', 'invalid JSON in request body')
      }
    }
    calls.push({ method: request.method, path, query: url.search, ...(text ? { body } : {}) })
    if (request.headers.get('authorization') !== `Bearer ${token}`) return apiError(401, 'unauthorized', 'unable to authenticate')

    return faults.play(
      (f) =>
        (!f.method || f.method === request.method) &&
        (typeof f.path === 'string' ? f.path === path : f.path.test(path)) &&
        (!f.when || f.when(body)),
      () => route(request.method, path, url, body),
      (f) => {
        const status = f.status ?? 503
        const code = f.code ?? (status === 429 ? 'rate_limit_exceeded' : 'service_error')
        return apiError(status, code, f.message ?? code.replaceAll('_', ' '), {})
      },
    )
  }

  return {
    handler,
    /** Call as `fetch` (workerd tests). */
    fetch: asFetch(handler),
    token,
    calls,
    servers,
    keys,
    inject: faults.inject,
    setUnavailable(types: string[]) {
      unavailable.clear()
      for (const t of types) unavailable.add(t)
    },
    /** Adds a server as if made earlier by someone else (cleanup tests). */
    seedServer(seed: { name: string; labels: Record<string, string>; status?: string; server_type?: string; ip?: string }) {
      const id = nextId++
      servers.set(id, {
        id,
        name: seed.name,
        status: seed.status ?? 'running',
        created: new Date().toISOString(),
        labels: seed.labels,
        server_type: seed.server_type ?? 'cx53',
        image: 'ubuntu-24.04',
        location: 'fsn1',
        ssh_keys: [],
        user_data: '',
        ip: seed.ip ?? `203.0.113.${(id % 200) + 1}`,
        gets: 0,
      })
      return id
    },
    seedKey(name: string, publicKey: string) {
      const key: FakeKey = {
        id: nextId++,
        name,
        public_key: publicKey,
        fingerprint: publicKey.split(/\s+/)[1],
        labels: {},
        created: new Date().toISOString(),
      }
      keys.set(key.id, key)
      return key.id
    },
    releaseHung: faults.releaseHung,
    count: (method: string, path: string | RegExp) =>
      calls.filter((c) => c.method === method && (typeof path === 'string' ? c.path === path : path.test(c.path))).length,
  }
}

export type FakeHetzner = ReturnType<typeof createFakeHetzner>
