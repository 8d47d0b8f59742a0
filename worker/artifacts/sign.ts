import { secretsEqual } from '../auth/tokens.js'
import { setting, type Env } from '../env.js'

/**
 * Signed artifact links. The broker serves its R2 bucket itself: an upload grant's URL and a
 * read URL point at `/v1/artifacts/objects/<key>` with `expires` (unix seconds) and
 * `signature` = base64url HMAC-SHA256 over the method, the key, the expiry and, for uploads,
 * the exact size and content type. The key is CRABBOX_SESSION_SECRET (under its own purpose
 * string, so an artifact signature is never a valid session or CSRF token and back).
 */

export const OBJECTS_PATH = '/v1/artifacts/objects/'

const encoder = new TextEncoder()

/** Only the upload's size and content type are signed; a read signs neither. */
export interface SignedFields {
  method: 'PUT' | 'GET'
  key: string
  expires: number
  size?: number
  contentType?: string
  /**
   * Uploads: the identity namespace of the caller the grant was for (`claimed` or `verified`).
   * An object keeps the namespace of its first upload; an upload from the other one is refused,
   * so a claimed owner can never overwrite a verified owner's file of the same name, or back.
   */
  namespace?: 'claimed' | 'verified'
}

function base64url(bytes: ArrayBuffer): string {
  let binary = ''
  for (const b of new Uint8Array(bytes)) binary += String.fromCharCode(b)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

function message(fields: SignedFields): string {
  return [
    'crabbox-artifact-v1',
    fields.method,
    fields.key,
    String(fields.expires),
    String(fields.size ?? ''),
    fields.contentType ?? '',
    fields.namespace ?? '',
  ].join('\n')
}

/** The signing secret, or undefined when the broker has none (artifacts are then unavailable). */
export function artifactSecret(env: Env): string | undefined {
  return setting(env, 'CRABBOX_SESSION_SECRET')
}

export async function signArtifact(secret: string, fields: SignedFields): Promise<string> {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
  return base64url(await crypto.subtle.sign('HMAC', key, encoder.encode(message(fields))))
}

/** Constant-time comparison of the presented signature with the expected one. */
export async function signatureMatches(secret: string, fields: SignedFields, presented: string): Promise<boolean> {
  return secretsEqual(presented, await signArtifact(secret, fields))
}

/** A key's path: each segment URL-escaped (`@` becomes `%40`). */
export function escapeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/')
}

/** The key a request path names, or undefined for a malformed one. */
export function keyFromPath(pathname: string): string | undefined {
  if (!pathname.startsWith(OBJECTS_PATH)) return undefined
  try {
    const segments = pathname.slice(OBJECTS_PATH.length).split('/').map(decodeURIComponent)
    // eslint-disable-next-line no-control-regex -- finding control characters is the point
    if (segments.some((s) => s === '' || s === '.' || s === '..' || /[\u0000-\u001f\u007f]/.test(s))) return undefined
    return segments.join('/')
  } catch {
    return undefined
  }
}

/** A signed link on `origin` for these fields. */
export async function signedUrl(origin: string, secret: string, fields: SignedFields): Promise<string> {
  const url = new URL(`${OBJECTS_PATH}${escapeKey(fields.key)}`, origin)
  url.searchParams.set('expires', String(fields.expires))
  if (fields.namespace) url.searchParams.set('ns', fields.namespace)
  url.searchParams.set('signature', await signArtifact(secret, fields))
  return url.toString()
}
