import { adminCaller, api, nobody, send, shared, type Who } from './broker-support.js'

/** Run-history helpers on top of broker-support: callers, strict JSON calls, raw responses. */

export const peter = shared('peter@example.com')
export const friend = shared('friend@example.com')
export const admin = adminCaller

export interface CallOptions {
  method?: string
  /** Objects are sent as JSON; strings as they are. */
  body?: unknown
}

/** The raw response; POST when there is a body, GET otherwise. */
export function call(who: Who | undefined, path: string, options: CallOptions = {}): Promise<Response> {
  return send(who ?? nobody, options.method ?? (options.body === undefined ? 'GET' : 'POST'), path, options.body)
}

/** Calls and parses JSON, failing loudly with the body when the status is not the expected one. */
export async function callJson<T = any>(who: Who, path: string, options: CallOptions & { status?: number } = {}): Promise<T> {
  const method = options.method ?? (options.body === undefined ? 'GET' : 'POST')
  const result = await api(who, method, path, options.body)
  const expected = options.status ?? 200
  if (result.status !== expected)
    throw new Error(`${method} ${path}: expected ${expected}, got ${result.status}: ${result.text.slice(0, 400)}`)
  return result.body as T
}

export async function createRun(who: Who, body: Record<string, unknown> = { command: ['npm', 'test'] }): Promise<any> {
  return (await callJson(who, '/v1/runs', { body, status: 201 })).run
}
