/**
 * The edge's part of the code bridge: a proxied request under `/portal/leases/{id}/code/`
 * is checked by the Fleet object without its body (caller, lease, bridge), and the body
 * goes straight on to the lease's relay object with the hand-off.
 */

const CODE_PROXY_PATH = /^\/portal\/leases\/[^/]+\/code(\/|$)/

export const isCodeProxyPath = (request: Request): boolean => CODE_PROXY_PATH.test(new URL(request.url).pathname)

/** The same request without its body (and without the headers that describe one). */
export function withoutBody(request: Request, headers: Headers): Request {
  const copy = new Headers(headers)
  for (const name of ['content-length', 'transfer-encoding', 'content-encoding']) copy.delete(name)
  return new Request(request.url, { method: request.method, headers: copy, redirect: 'manual' })
}
