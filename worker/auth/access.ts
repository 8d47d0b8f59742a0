import { createRemoteJWKSet, jwtVerify } from 'jose'
import type { Env } from '../env.js'
import { setting } from '../env.js'

/**
 * Cloudflare Access JWT verification (who a shared-token caller is): RS256 against the
 * team's JWKS at `https://<team>/cdn-cgi/access/certs`, with aud, iss, exp and nbf.
 */

// One key set per certs URL per isolate; jose refetches on unknown `kid`.
const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>()

export function accessTeamOrigin(teamDomain: string): string {
  const host = teamDomain.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '')
  return `https://${host}`
}

/** Is Cloudflare Access configured (team domain and audience)? Then the shared token needs a valid Access JWT. */
export const accessConfigured = (env: Env): boolean =>
  Boolean(setting(env, 'CRABBOX_ACCESS_TEAM_DOMAIN') && setting(env, 'CRABBOX_ACCESS_AUD'))

/** The verified email from `cf-access-jwt-assertion`, or undefined (unset, invalid, or Access not configured). */
export async function verifiedAccessEmail(request: Request, env: Env): Promise<string | undefined> {
  const team = setting(env, 'CRABBOX_ACCESS_TEAM_DOMAIN')
  const aud = setting(env, 'CRABBOX_ACCESS_AUD')
  const token = request.headers.get('cf-access-jwt-assertion')
  if (!team || !aud || !token) return undefined
  const issuer = accessTeamOrigin(team)
  const certsUrl = `${issuer}/cdn-cgi/access/certs`
  let keys = keySets.get(certsUrl)
  if (!keys) {
    keys = createRemoteJWKSet(new URL(certsUrl))
    keySets.set(certsUrl, keys)
  }
  try {
    const { payload, protectedHeader } = await jwtVerify(token, keys, {
      algorithms: ['RS256'],
      audience: aud,
      issuer,
      requiredClaims: ['exp'],
    })
    if (!protectedHeader.kid) return undefined
    const email = payload.email
    return typeof email === 'string' && email.trim() ? email.trim() : undefined
  } catch {
    return undefined
  }
}
