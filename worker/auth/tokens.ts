import type { Env } from '../env.js'
import { setting } from '../env.js'

/**
 * Signed user tokens `cbxu_<base64url JSON>.<base64url HMAC-SHA256(payload part)>`
 * issued by the GitHub login, and constant-time comparison of bearer secrets.
 */

export interface UserTokenPayload {
  typ: 'crabbox-user'
  owner: string
  org: string
  login: string
  name?: string
  iat: number
  exp: number
  /** Never minted, and ignored when verifying: user tokens are never admin. */
  admin?: boolean
}

export const USER_TOKEN_PREFIX = 'cbxu_'
export const USER_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600

const encoder = new TextEncoder()

function base64url(bytes: Uint8Array): string {
  let binary = ''
  for (const b of bytes) binary += String.fromCharCode(b)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

function fromBase64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4))
    return Uint8Array.from(binary, (c) => c.charCodeAt(0))
  } catch {
    return undefined
  }
}

/**
 * The HMAC key: the session secret only (never the shared token, whose holders could then
 * mint user tokens for anyone); undefined when unset, which turns GitHub login off.
 */
export function userTokenSecret(env: Env): string | undefined {
  return setting(env, 'CRABBOX_SESSION_SECRET')
}

async function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
}

/** Mints a user token for a GitHub-authenticated identity (never with admin). */
export async function signUserToken(
  identity: { owner: string; org: string; login: string; name?: string },
  secret: string,
  now = Date.now(),
): Promise<string> {
  const iat = Math.floor(now / 1000)
  const payload: UserTokenPayload = {
    typ: 'crabbox-user',
    owner: identity.owner,
    org: identity.org,
    login: identity.login,
    iat,
    exp: iat + USER_TOKEN_LIFETIME_SECONDS,
  }
  if (identity.name) payload.name = identity.name
  const part = base64url(encoder.encode(JSON.stringify(payload)))
  const signature = new Uint8Array(await crypto.subtle.sign('HMAC', await hmacKey(secret), encoder.encode(part)))
  return `${USER_TOKEN_PREFIX}${part}.${base64url(signature)}`
}

/** The payload of a valid, unexpired user token, else undefined. */
export async function verifyUserToken(token: string, secret: string, now = Date.now()): Promise<UserTokenPayload | undefined> {
  if (!token.startsWith(USER_TOKEN_PREFIX)) return undefined
  const pieces = token.slice(USER_TOKEN_PREFIX.length).split('.')
  if (pieces.length !== 2) return undefined
  const [part, sig] = pieces
  const signature = fromBase64url(sig)
  const payloadBytes = fromBase64url(part)
  if (!signature || !payloadBytes) return undefined
  // subtle.verify compares the MAC in constant time.
  const ok = await crypto.subtle.verify('HMAC', await hmacKey(secret), signature, encoder.encode(part))
  if (!ok) return undefined
  let payload: unknown
  try {
    payload = JSON.parse(new TextDecoder().decode(payloadBytes))
  } catch {
    return undefined
  }
  const p = payload as Partial<UserTokenPayload>
  if (p?.typ !== 'crabbox-user' || typeof p.owner !== 'string' || typeof p.org !== 'string' || typeof p.login !== 'string') return undefined
  if (typeof p.exp !== 'number' || p.exp * 1000 <= now) return undefined
  return p as UserTokenPayload
}

/** Constant-time equality of two secrets (hashing first hides length differences). */
export async function secretsEqual(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([
    crypto.subtle.digest('SHA-256', encoder.encode(given)),
    crypto.subtle.digest('SHA-256', encoder.encode(expected)),
  ])
  return crypto.subtle.timingSafeEqual(a, b)
}
