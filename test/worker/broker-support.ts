import type { Env } from '../../worker/env.js'
import { providerRegistry } from '../../worker/providers/registry.js'
import { env, runInDurableObject, SELF } from 'cloudflare:test'
import { SignJWT, importJWK } from 'jose'
import type { FleetDurableObject } from '../../worker/fleet/fleet.js'
import type { FleetDeps } from '../../worker/fleet/deps.js'
import { signUserToken } from '../../worker/auth/tokens.js'
import { newLeaseId } from '../../src/protocol/ids.js'
import { ACCESS_AUD, ACCESS_PRIVATE_JWK, ACCESS_TEAM_DOMAIN } from './fixtures/access.js'
import { workerTestBindings } from './fixtures/bindings.js'

/**
 * Talking to the broker the way clients do (through the edge, with a bearer
 * token and identity headers), plus access to the Fleet object for alarm and
 * storage-level checks.
 */

export type Who =
  | { kind: 'shared'; owner: string; org?: string }
  | { kind: 'admin'; owner?: string; org?: string }
  | { kind: 'user'; token: string }
  | { kind: 'none' }

export const shared = (owner: string, org = 'openclaw'): Who => ({ kind: 'shared', owner, org })
export const adminCaller: Who = { kind: 'admin', owner: 'ops@example.com', org: 'openclaw' }
export const nobody: Who = { kind: 'none' }

export function headersFor(who: Who): Record<string, string> {
  switch (who.kind) {
    case 'none':
      return {}
    case 'user':
      return { authorization: `Bearer ${who.token}` }
    case 'shared':
    case 'admin': {
      const token = who.kind === 'admin' ? workerTestBindings.CRABBOX_ADMIN_TOKEN : workerTestBindings.CRABBOX_SHARED_TOKEN
      const headers: Record<string, string> = { authorization: `Bearer ${token}` }
      if (who.owner) headers['x-crabbox-owner'] = who.owner
      if (who.org) headers['x-crabbox-org'] = who.org
      return headers
    }
  }
}

export interface Call {
  status: number
  body: any
  text: string
}

/** The raw response (for text bodies, headers and status-only checks). Objects are sent as JSON, strings as they are. */
export function send(who: Who, method: string, path: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<Response> {
  const headers: Record<string, string> = { ...headersFor(who), ...extraHeaders }
  let payload: string | undefined
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body)
    headers['content-type'] ??= 'application/json'
  }
  return SELF.fetch(`https://broker.test${path}`, { method, headers, body: payload })
}

export async function api(
  who: Who,
  method: string,
  path: string,
  body?: unknown,
  extraHeaders: Record<string, string> = {},
): Promise<Call> {
  const response = await send(who, method, path, body, extraHeaders)
  const text = await response.text()
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  return { status: response.status, body: parsed, text }
}

/** A fresh lease ID per call (tests share one Fleet object). */
export const leaseId = (): string => newLeaseId()

/** Creates a static-pool lease and returns the record (asserting 201). */
export async function createLease(who: Who, extra: Record<string, unknown> = {}): Promise<any> {
  const result = await api(who, 'POST', '/v1/leases', {
    provider: 'static',
    sshPublicKey: 'ssh-ed25519 AAAAC3NzaTest test',
    leaseID: leaseId(),
    ...extra,
  })
  if (result.status !== 201) throw new Error(`create: ${result.status} ${result.text}`)
  return result.body.lease
}

export function fleetStub(): DurableObjectStub<FleetDurableObject> {
  const namespace = env.FLEET as unknown as DurableObjectNamespace<FleetDurableObject>
  return namespace.get(namespace.idFromName('default'))
}

/** Runs `fn` inside the Fleet object with its live dependencies. */
export function inFleet<T>(fn: (deps: FleetDeps, state: DurableObjectState) => T | Promise<T>): Promise<T> {
  return runInDurableObject(fleetStub(), (instance: FleetDurableObject, state) => fn(instance.deps, state))
}

/** A user token signed with the test session secret. */
export function userToken(identity: { owner: string; org: string; login: string }, now = Date.now()): Promise<string> {
  return signUserToken(identity, workerTestBindings.CRABBOX_SESSION_SECRET, now)
}

/** A Cloudflare Access JWT signed with the test key the outbound handler publishes. */
export async function accessJwt(
  claims: { email: string; aud?: string; iss?: string; exp?: number; nbf?: number },
  kid = 'crabbox-test-key',
): Promise<string> {
  const key = await importJWK(ACCESS_PRIVATE_JWK, 'RS256')
  const now = Math.floor(Date.now() / 1000)
  const jwt = new SignJWT({ email: claims.email })
    .setProtectedHeader({ alg: 'RS256', kid })
    .setAudience(claims.aud ?? ACCESS_AUD)
    .setIssuer(claims.iss ?? `https://${ACCESS_TEAM_DOMAIN}`)
    .setIssuedAt(now)
    .setExpirationTime(claims.exp ?? now + 300)
  if (claims.nbf !== undefined) jwt.setNotBefore(claims.nbf)
  return jwt.sign(key)
}

const restore: (() => Promise<void>)[] = []

/** Runs the Fleet object with extra settings until `restoreSettings()` (call it from afterEach). */
export async function withSettings(settings: Record<string, string | undefined>): Promise<void> {
  await inFleet((deps) => {
    const original = { env: deps.env, providers: deps.providers }
    restore.push(() =>
      inFleet((d) => {
        Object.assign(d, original)
      }),
    )
    deps.env = { ...deps.env, ...settings } as Env
    deps.providers = providerRegistry({ env: deps.env, storage: deps.storage, fetch })
  })
}

export async function restoreSettings(): Promise<void> {
  while (restore.length) await restore.pop()!()
}

/** The edge (the Worker's own fetch handler) with different settings; the Fleet object keeps its own. */
