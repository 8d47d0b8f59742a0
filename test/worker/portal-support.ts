import { SELF } from 'cloudflare:test'
import { csrfToken } from '../../worker/portal/session.js'
import { headersFor, userToken, type Who } from './broker-support.js'
import { workerTestBindings } from './fixtures/bindings.js'

/** Talking to the portal the way a browser does: the session cookie, same-origin form posts. */

export const ORIGIN = 'https://broker.test'

/** A signed-in browser: a GitHub user's token in the session cookie. */
export interface Browser {
  cookie: string
  token: string
  csrf: string
  owner: string
}

export async function browserFor(owner: string, org = 'openclaw', login = owner.split('@')[0]!): Promise<Browser> {
  const token = await userToken({ owner, org, login })
  return {
    cookie: `crabbox_session=${encodeURIComponent(token)}`,
    token,
    csrf: await csrfToken(token, workerTestBindings.CRABBOX_SESSION_SECRET),
    owner,
  }
}

export type Caller = Browser | Who | undefined

function headers(caller: Caller, extra: Record<string, string> = {}): Record<string, string> {
  if (!caller) return { ...extra }
  if ('cookie' in caller) return { cookie: caller.cookie, ...extra }
  return { ...headersFor(caller), ...extra }
}

/** A page GET (no redirects followed). */
export async function getPage(caller: Caller, path: string, extra: Record<string, string> = {}) {
  const response = await SELF.fetch(`${ORIGIN}${path}`, { headers: headers(caller, extra), redirect: 'manual' })
  return { status: response.status, headers: response.headers, text: await response.text() }
}

/** A form post, from the portal's own origin unless `extra` says otherwise. */
export async function postForm(caller: Caller, path: string, fields: Record<string, string>, extra: Record<string, string> = {}) {
  const response = await SELF.fetch(`${ORIGIN}${path}`, {
    method: 'POST',
    headers: headers(caller, { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN, ...extra }),
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual',
  })
  return { status: response.status, headers: response.headers, text: await response.text() }
}
