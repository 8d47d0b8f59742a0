/**
 * A fake Tailscale API: the two calls the broker makes to mint a one-off auth
 * key, with their wire format, and switches to inject failures.
 *
 * - `POST /api/v2/oauth/token`: OAuth 2.0 client credentials (form body
 *   `client_id`, `client_secret`, `grant_type=client_credentials`, or HTTP Basic);
 *   answers `{access_token, token_type: "Bearer", expires_in, scope}`, and
 *   `{error: "invalid_client", error_description}` with 401 for a wrong client.
 * - `POST /api/v2/tailnet/{tailnet}/keys` with `Authorization: Bearer <token>`:
 *   body `{capabilities: {devices: {create: {reusable, ephemeral, preauthorized,
 *   tags}}}, expirySeconds, description}`; answers `{id, key, created, expires,
 *   capabilities, description}`; errors are `{message}` (401 bad token, 400 tags
 *   the client may not use or an expiry over 90 days, 404 an unknown tailnet).
 *
 * A plain `(Request) => Promise<Response>` handler, called as `fetch` inside
 * workerd and served on loopback for Node (`serveFake`). No Node imports.
 */
import { asFetch, faultSwitch, type FaultSpec } from './fake-faults.js'

export { serveFake, type ServedFake } from './fake-faults.js'

export interface TailscaleFailure extends FaultSpec {
  /** `token` (the OAuth call) or `keys` (key creation). */
  call: 'token' | 'keys'
}

export interface MintedKey {
  id: string
  key: string
  tailnet: string
  reusable: boolean
  ephemeral: boolean
  preauthorized: boolean
  tags: string[]
  expirySeconds: number
  description: string
}

export interface FakeTailscaleOptions {
  clientId?: string
  clientSecret?: string
  /** The tailnet the client belongs to (`-` always means it). */
  tailnet?: string
  /** Tags the OAuth client may put on keys (default tag:crabbox, tag:ci). */
  allowedTags?: string[]
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })

const hex = (bytes: number) => [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, '0')).join('')

export function createFakeTailscale(options: FakeTailscaleOptions = {}) {
  const clientId = options.clientId ?? `k${hex(6)}CNTRL`
  const clientSecret = options.clientSecret ?? `tskey-client-${clientId}-${hex(16)}`
  const tailnet = options.tailnet ?? 'example.com'
  const allowedTags = new Set(options.allowedTags ?? ['tag:crabbox', 'tag:ci'])
  const tokens = new Set<string>()
  const minted: MintedKey[] = []
  const calls: Array<{ method: string; path: string }> = []
  const faults = faultSwitch<TailscaleFailure>()

  function token(form: URLSearchParams, authorization: string | null): Response {
    let id = form.get('client_id')
    let secret = form.get('client_secret')
    if (authorization?.startsWith('Basic ')) [id, secret] = atob(authorization.slice(6)).split(':')
    if (id !== clientId || secret !== clientSecret)
      return json(401, { error: 'invalid_client', error_description: 'client authentication failed' })
    const accessToken = `tskey-api-${hex(6)}-${hex(16)}`
    tokens.add(accessToken)
    return json(200, { access_token: accessToken, token_type: 'Bearer', expires_in: 3600, scope: 'auth_keys' })
  }

  function createKey(name: string, authorization: string | null, body: Record<string, any>): Response {
    if (!authorization?.startsWith('Bearer ') || !tokens.has(authorization.slice(7))) return json(401, { message: 'API token invalid' })
    if (name !== '-' && name !== tailnet) return json(404, { message: 'tailnet not found' })
    const create = body.capabilities?.devices?.create ?? {}
    const tags: string[] = Array.isArray(create.tags) ? create.tags : []
    if (!tags.length) return json(400, { message: 'OAuth-created auth keys must have tags' })
    const refused = tags.filter((tag) => !allowedTags.has(tag))
    if (refused.length) return json(400, { message: `requested tags [${refused.join(' ')}] are invalid or not permitted` })
    const expirySeconds = typeof body.expirySeconds === 'number' ? body.expirySeconds : 90 * 86_400
    if (expirySeconds > 90 * 86_400) return json(400, { message: 'expirySeconds must be at most 90 days' })
    const id = `k${hex(6)}CNTRL`
    const key: MintedKey = {
      id,
      key: `tskey-auth-${id}-${hex(16)}`,
      tailnet,
      reusable: create.reusable === true,
      ephemeral: create.ephemeral === true,
      preauthorized: create.preauthorized === true,
      tags,
      expirySeconds,
      description: typeof body.description === 'string' ? body.description : '',
    }
    minted.push(key)
    const created = new Date()
    return json(200, {
      id,
      key: key.key,
      created: created.toISOString(),
      expires: new Date(created.getTime() + expirySeconds * 1000).toISOString(),
      capabilities: { devices: { create: { reusable: key.reusable, ephemeral: key.ephemeral, preauthorized: key.preauthorized, tags } } },
      description: key.description,
    })
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url)
    const path = url.pathname
    calls.push({ method: request.method, path })
    const authorization = request.headers.get('authorization')
    const keysPath = /^\/api\/v2\/tailnet\/([^/]+)\/keys$/.exec(path)
    const call = path === '/api/v2/oauth/token' ? 'token' : keysPath ? 'keys' : undefined
    if (request.method !== 'POST' || !call) return json(404, { message: `no route for ${request.method} ${path}` })
    const text = await request.text()
    return faults.play(
      (f) => f.call === call,
      async () => {
        if (call === 'token') return token(new URLSearchParams(text), authorization)
        let body: Record<string, any>
        try {
          body = JSON.parse(text)
        } catch {
          return json(400, { message: 'invalid JSON body' })
        }
        return createKey(decodeURIComponent(keysPath![1]), authorization, body)
      },
      (f) => json(f.status ?? 503, { message: f.message ?? 'service unavailable' }),
    )
  }

  return {
    handler,
    /** Call as `fetch` (workerd tests). */
    fetch: asFetch(handler),
    clientId,
    clientSecret,
    tailnet,
    /** Every key minted so far, with the capabilities it was asked for. */
    minted,
    calls,
    inject: faults.inject,
    releaseHung: faults.releaseHung,
  }
}

export type FakeTailscale = ReturnType<typeof createFakeTailscale>
