import { ErrorCode } from '../../src/protocol/errors.js'
import { answerUnread } from '../edge-body.js'
import type { Env } from '../env.js'
import { artifactSecret, keyFromPath, signatureMatches, type SignedFields } from './sign.js'

/**
 * The signed object routes the edge answers itself (no Fleet object, no bearer token: the
 * signature is the credential): `PUT` streams the body into the ARTIFACTS R2 bucket, `GET`
 * streams an object out. Bodies never pass through the Durable Object, so a 1 GiB file is
 * one streamed request, not a copy in memory.
 */

function refuse(status: number, error: string, message: string): Response {
  return Response.json({ error, message }, { status })
}

const denied = () => refuse(403, ErrorCode.forbidden, 'the artifact link is invalid or has expired')

/** What a signed request proves: its key and the fields it was signed over, or a refusal. */
async function verified(request: Request, env: Env, method: 'PUT' | 'GET'): Promise<SignedFields | Response> {
  const url = new URL(request.url)
  const key = keyFromPath(url.pathname)
  const expires = Number(url.searchParams.get('expires'))
  const signature = url.searchParams.get('signature') ?? ''
  const secret = artifactSecret(env)
  if (!key || !Number.isSafeInteger(expires) || signature === '' || !secret) return denied()
  if (expires * 1000 < Date.now()) return denied()
  const fields: SignedFields = { method, key, expires }
  if (method === 'PUT') {
    fields.size = Number(request.headers.get('content-length') ?? 'NaN')
    fields.contentType = request.headers.get('content-type') ?? ''
    const namespace = url.searchParams.get('ns')
    if (namespace !== 'claimed' && namespace !== 'verified') return denied()
    fields.namespace = namespace
  }
  return (await signatureMatches(secret, fields, signature)) ? fields : denied()
}

function bucket(env: Env): R2Bucket | undefined {
  return env.ARTIFACTS as R2Bucket | undefined
}

/** `PUT /v1/artifacts/objects/<key>`: the granted upload, exactly the granted size and type. */
export async function putArtifact(request: Request, env: Env): Promise<Response> {
  const fields = await verified(request, env, 'PUT')
  // Refused before reading: the answer goes out while the edge lingers on the upload (edge-body.ts).
  if (fields instanceof Response) return answerUnread(fields, request)
  const store = bucket(env)
  if (!store) return refuse(503, 'artifact_upload_unavailable', 'this broker has no ARTIFACTS bucket')
  const existing = await store.head(fields.key)
  if (existing && existing.customMetadata?.namespace !== fields.namespace) {
    return answerUnread(refuse(403, ErrorCode.forbidden, 'this artifact key belongs to an owner of another identity namespace'), request)
  }
  const size = fields.size ?? 0
  // A known-length stream: R2 refuses a body that ends short of (or runs past) the signed size.
  const body = request.body ?? new Blob([]).stream()
  const fixed = new FixedLengthStream(size)
  const piped = body.pipeTo(fixed.writable).then(
    () => undefined,
    (error: unknown) => error,
  )
  let object: R2Object | null
  try {
    object = await store.put(fields.key, fixed.readable, {
      httpMetadata: fields.contentType ? { contentType: fields.contentType } : undefined,
      customMetadata: { namespace: fields.namespace ?? '' },
    })
  } catch (error) {
    if (!(await piped)) throw error
    return refuse(400, ErrorCode.invalidRequest, 'the upload body does not match its signed size')
  }
  if (await piped) return refuse(400, ErrorCode.invalidRequest, 'the upload body does not match its signed size')
  return new Response(null, { status: 200, headers: { etag: object?.httpEtag ?? '' } })
}

/** `GET /v1/artifacts/objects/<key>`: a signed read link. Served sandboxed: an HTML artifact never runs as the broker's page. */
export async function getArtifact(request: Request, env: Env): Promise<Response> {
  const fields = await verified(request, env, 'GET')
  if (fields instanceof Response) return fields
  const object = await bucket(env)?.get(fields.key)
  if (!object) return refuse(404, ErrorCode.notFound, 'no such artifact')
  const headers = new Headers()
  object.writeHttpMetadata(headers)
  headers.set('etag', object.httpEtag)
  headers.set('content-length', String(object.size))
  headers.set('content-security-policy', 'sandbox')
  headers.set('x-content-type-options', 'nosniff')
  headers.set('cache-control', 'private, max-age=300')
  return new Response(object.body, { headers })
}
