import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import type { LeaseRecord, LeaseRequest } from '../../src/protocol/leases.js'
import {
  DEFAULT_TAILSCALE_TAGS,
  normalizeTailscaleTags,
  renderTailscaleHostname,
  TAILSCALE_STATES,
  type TailscaleMetadata,
  type TailscaleUpdateRequest,
} from '../../src/protocol/tailscale.js'
import type { Identity } from '../auth/identity.js'
import { setting, type Env } from '../env.js'
import type { FleetDeps } from './deps.js'
import { resolveLease, saveRecord } from './lease-store.js'

/**
 * Brokered Tailscale: a lease with `tailscale: true` joins the operator's
 * tailnet with a one-off auth key the broker mints through the Tailscale OAuth
 * API (client credentials, then a key that is single-use, ephemeral,
 * pre-authorized, tagged and short-lived). The key goes into the runner's
 * cloud-init and nowhere else: it is never stored, logged or returned.
 *
 * Settings: `CRABBOX_TAILSCALE_CLIENT_ID`, `_CLIENT_SECRET`, `_TAILNET`
 * (default `-`, the client's own tailnet), `_TAGS` (allowed tags, default
 * `tag:crabbox`), `_ENABLED` (`0` turns it off; `1` turns it on even without a
 * client, which then fails each request as unavailable), `_API_URL`
 * (default https://api.tailscale.com; tests point it at a fake).
 */

/** Seconds a minted key stays usable: long enough for a machine to boot and join, no longer. */
export const TAILSCALE_KEY_EXPIRY_SECONDS = 600

const DEFAULT_API = 'https://api.tailscale.com'

function enabled(env: Env): boolean {
  const flag = setting(env, 'CRABBOX_TAILSCALE_ENABLED')
  if (flag === '0') return false
  if (flag === '1') return true
  return Boolean(setting(env, 'CRABBOX_TAILSCALE_CLIENT_ID') && setting(env, 'CRABBOX_TAILSCALE_CLIENT_SECRET'))
}

function allowedTags(env: Env): string[] {
  const listed = (setting(env, 'CRABBOX_TAILSCALE_TAGS') ?? DEFAULT_TAILSCALE_TAGS.join(',')).split(',')
  return normalizeTailscaleTags(listed).tags
}

/**
 * The Tailscale metadata a new lease records (state `requested`), checked before
 * anything is reserved: Linux only, Tailscale set up at this broker, tags from the
 * allowed list, an exit node for LAN access. Undefined when the lease did not ask.
 */
export function planTailscale(env: Env, request: LeaseRequest, target: string): Omit<TailscaleMetadata, 'hostname'> | undefined {
  if (!request.tailscale) return undefined
  if (target !== 'linux')
    throw new ApiError(400, ErrorCode.unsupportedTarget, 'brokered Tailscale provisioning currently supports managed Linux leases only')
  if (!enabled(env)) throw new ApiError(403, ErrorCode.tailscaleDisabled, 'Tailscale is disabled for this coordinator')
  const allowed = allowedTags(env)
  const requested = request.tailscaleTags === undefined ? [...DEFAULT_TAILSCALE_TAGS] : request.tailscaleTags
  const { tags, invalid } = normalizeTailscaleTags(requested)
  const chosen = request.tailscaleTags?.length === 0 ? allowed : tags
  const refused = [...invalid, ...chosen.filter((tag) => !allowed.includes(tag))]
  if (refused.length) throw new ApiError(400, ErrorCode.invalidTailscaleTags, `tailscale tags not allowed: ${refused.join(',')}`)
  if (!chosen.length) throw new ApiError(400, ErrorCode.invalidTailscaleTags, 'tailscale requires at least one allowed tag')
  const exitNode = request.tailscaleExitNode?.trim() || undefined
  return {
    enabled: true,
    tags: chosen,
    state: 'requested',
    ...(exitNode ? { exitNode, exitNodeAllowLanAccess: request.tailscaleExitNodeAllowLanAccess ?? false } : {}),
  }
}

/** The runner's tailnet hostname for a new lease (the request's template, else `crabbox-{slug}`). */
export function tailscaleHostname(request: LeaseRequest, lease: { id: string; slug: string; provider: string }): string {
  return renderTailscaleHostname(request.tailscaleHostname ?? '', lease) || renderTailscaleHostname('', lease)
}

const unavailable = (message: string) => new ApiError(502, ErrorCode.tailscaleUnavailable, message)

/** Reads a JSON reply; a failed call becomes `tailscale_unavailable` with Tailscale's own message (never a credential). */
async function answer(response: Response, what: string): Promise<Record<string, unknown>> {
  const text = await response.text()
  let body: Record<string, unknown> = {}
  try {
    body = JSON.parse(text) as Record<string, unknown>
  } catch {
    // Not JSON: only the status is reported.
  }
  if (!response.ok) {
    const said = [body.message, body.error_description, body.error].find((item): item is string => typeof item === 'string') ?? ''
    throw unavailable(`Tailscale ${what} failed: HTTP ${response.status}${said ? `: ${said.slice(0, 200)}` : ''}`)
  }
  return body
}

/**
 * Mints a one-off auth key for one lease: an OAuth access token from the client
 * credentials, then `POST /api/v2/tailnet/<tailnet>/keys` with a single-use,
 * ephemeral, pre-authorized key carrying the lease's tags.
 */
export async function mintTailscaleKey(deps: Pick<FleetDeps, 'env' | 'fetch'>, leaseId: string, tags: readonly string[]): Promise<string> {
  const { env } = deps
  const clientId = setting(env, 'CRABBOX_TAILSCALE_CLIENT_ID')
  const clientSecret = setting(env, 'CRABBOX_TAILSCALE_CLIENT_SECRET')
  if (!clientId || !clientSecret)
    throw unavailable('Tailscale OAuth client is not configured (CRABBOX_TAILSCALE_CLIENT_ID, CRABBOX_TAILSCALE_CLIENT_SECRET)')
  const api = (setting(env, 'CRABBOX_TAILSCALE_API_URL') ?? DEFAULT_API).replace(/\/+$/, '')
  const tailnet = encodeURIComponent(setting(env, 'CRABBOX_TAILSCALE_TAILNET') ?? '-')
  const call = async (url: string, init: RequestInit, what: string) => {
    try {
      return await answer(await deps.fetch(new Request(url, { ...init, signal: AbortSignal.timeout(15_000) })), what)
    } catch (error) {
      if (error instanceof ApiError) throw error
      throw unavailable(`Tailscale ${what} failed: ${(error as Error).name === 'TimeoutError' ? 'timed out' : 'could not reach the API'}`)
    }
  }
  const token = await call(
    `${api}/api/v2/oauth/token`,
    {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: clientId, client_secret: clientSecret, grant_type: 'client_credentials' }).toString(),
    },
    'OAuth token request',
  )
  if (typeof token.access_token !== 'string' || !token.access_token) throw unavailable('Tailscale OAuth token reply has no access_token')
  const created = await call(
    `${api}/api/v2/tailnet/${tailnet}/keys`,
    {
      method: 'POST',
      headers: { authorization: `Bearer ${token.access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        capabilities: { devices: { create: { reusable: false, ephemeral: true, preauthorized: true, tags } } },
        expirySeconds: TAILSCALE_KEY_EXPIRY_SECONDS,
        description: `crabbox ${leaseId}`.slice(0, 50),
      }),
    },
    'auth key creation',
  )
  if (typeof created.key !== 'string' || !created.key) throw unavailable('Tailscale auth key reply has no key')
  return created.key
}

const trimmed = (value: string | undefined) => (value?.trim() ? value.trim() : undefined)

/** Merges a metadata update into the current metadata (see `POST /v1/leases/{id}/tailscale` in docs/network.md). */
export function mergeTailscale(current: TailscaleMetadata | undefined, update: TailscaleUpdateRequest): TailscaleMetadata {
  const state = (TAILSCALE_STATES as readonly string[]).includes(update.state ?? '')
    ? (update.state as TailscaleMetadata['state'])
    : (current?.state ?? 'requested')
  const next: TailscaleMetadata = {
    enabled: update.enabled ?? current?.enabled ?? true,
    tags: update.tags ? update.tags.map((tag) => tag.trim().toLowerCase()).filter(Boolean) : (current?.tags ?? []),
    state,
  }
  for (const key of ['hostname', 'fqdn', 'ipv4', 'exitNode', 'error'] as const) {
    const value = trimmed(update[key]) ?? current?.[key]
    if (value) next[key] = value
  }
  if (next.exitNode) next.exitNodeAllowLanAccess = update.exitNodeAllowLanAccess ?? current?.exitNodeAllowLanAccess ?? false
  if (state !== 'failed') delete next.error
  return next
}

/** `POST /v1/leases/{id}/tailscale`: any caller who can see the lease records what the runner reported. */
export function updateTailscale(deps: FleetDeps, identity: Identity, ref: string, update: TailscaleUpdateRequest): LeaseRecord {
  const { storage } = deps
  const now = deps.now()
  return storage.transaction(() => {
    const lease = resolveLease(storage, identity, ref, now)
    const next: LeaseRecord = { ...lease, tailscale: mergeTailscale(lease.tailscale, update), updatedAt: now.toISOString() }
    saveRecord(storage, next)
    return next
  })
}
