import { env, SELF } from 'cloudflare:test'

/**
 * Calls the broker through the real edge (auth, identity headers, the Fleet object) the
 * way the CLI does: a bearer token plus X-Crabbox-Owner / X-Crabbox-Org.
 */

export interface Caller {
  owner: string
  org: string
  admin?: boolean
}

export const peter: Caller = { owner: 'peter@example.com', org: 'openclaw' }
export const friend: Caller = { owner: 'friend@example.com', org: 'openclaw' }
export const admin: Caller = { owner: 'ops@example.com', org: 'openclaw', admin: true }

const settings = env as unknown as Record<string, string | undefined>

export function tokenFor(caller: Caller): string {
  const token = caller.admin ? settings.CRABBOX_ADMIN_TOKEN : settings.CRABBOX_SHARED_TOKEN
  if (!token) throw new Error('worker tests need CRABBOX_SHARED_TOKEN and CRABBOX_ADMIN_TOKEN bindings')
  return token
}

export function authHeaders(caller: Caller | undefined): Record<string, string> {
  if (!caller) return {}
  return { authorization: `Bearer ${tokenFor(caller)}`, 'x-crabbox-owner': caller.owner, 'x-crabbox-org': caller.org }
}

export interface CallOptions {
  method?: string
  /** Objects are sent as JSON; strings as they are. */
  body?: unknown
  headers?: Record<string, string>
}

export function call(caller: Caller | undefined, path: string, options: CallOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...authHeaders(caller), ...options.headers }
  let body: string | undefined
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body)
    headers['content-type'] ??= 'application/json'
  }
  return SELF.fetch(`https://broker.test${path}`, { method: options.method ?? (body === undefined ? 'GET' : 'POST'), headers, body })
}

/** Calls and parses JSON, failing loudly with the body when the status is not the expected one. */
export async function callJson<T = any>(caller: Caller | undefined, path: string, options: CallOptions & { status?: number } = {}): Promise<T> {
  const response = await call(caller, path, options)
  const text = await response.text()
  const expected = options.status ?? 200
  if (response.status !== expected) throw new Error(`${options.method ?? 'GET'} ${path}: expected ${expected}, got ${response.status}: ${text.slice(0, 400)}`)
  return JSON.parse(text) as T
}

export async function createRun(caller: Caller, body: Record<string, unknown> = { command: ['npm', 'test'] }): Promise<any> {
  return (await callJson(caller, '/v1/runs', { body, status: 201 })).run
}
