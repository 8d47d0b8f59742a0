import { createHash, createHmac } from 'node:crypto'

/**
 * A small path-style S3 (`PUT`/`GET /<bucket>/<key>`) that checks every PUT's SigV4
 * `Authorization` header itself (its own canonical request and signing key, not the
 * client's library): a wrong secret, a changed header or a header left unsigned is 403.
 * Objects live in memory. `failKeys` answers 500 for those keys (a failed upload).
 */

export interface FakeS3Options {
  accessKeyId: string
  secretAccessKey: string
  region: string
  bucket: string
  /** Headers every PUT must have signed (lower case). */
  mustSign?: string[]
  failKeys?: string[]
}

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest()
const sha256 = (data: string) => createHash('sha256').update(data).digest('hex')

const s3Error = (status: number, code: string) =>
  new Response(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`, {
    status,
    headers: { 'content-type': 'application/xml' },
  })

export function createFakeS3(options: FakeS3Options) {
  const objects = new Map<string, { body: Uint8Array; contentType: string; headers: Record<string, string> }>()
  const mustSign = options.mustSign ?? ['host', 'x-amz-date', 'x-amz-content-sha256', 'content-length', 'content-type']

  function verify(request: Request, url: URL): boolean {
    const auth =
      /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
        request.headers.get('authorization') ?? '',
      )
    if (!auth) return false
    const [, keyId, date, region, signedList, signature] = auth as unknown as string[]
    if (keyId !== options.accessKeyId || region !== options.region) return false
    const signed = signedList!.split(';')
    if (mustSign.some((name) => !signed.includes(name))) return false
    const amzDate = request.headers.get('x-amz-date') ?? ''
    if (!amzDate.startsWith(date!)) return false
    const query = [...url.searchParams].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const canonical = [
      request.method,
      url.pathname,
      query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&'),
      signed.map((name) => `${name}:${(request.headers.get(name) ?? '').trim()}\n`).join(''),
      signedList,
      request.headers.get('x-amz-content-sha256') ?? '',
    ].join('\n')
    const scope = `${date}/${region}/s3/aws4_request`
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n')
    const key = hmac(hmac(hmac(hmac(`AWS4${options.secretAccessKey}`, date!), region!), 's3'), 'aws4_request')
    return hmac(key, toSign).toString('hex') === signature
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url)
    const prefix = `/${options.bucket}/`
    if (!url.pathname.startsWith(prefix)) return s3Error(404, 'NoSuchBucket')
    const key = url.pathname.slice(prefix.length).split('/').map(decodeURIComponent).join('/')
    if (request.method === 'PUT') {
      if (!verify(request, url)) return s3Error(403, 'SignatureDoesNotMatch')
      if (options.failKeys?.includes(key)) return s3Error(500, 'InternalError')
      const body = new Uint8Array(await request.arrayBuffer())
      if (String(body.byteLength) !== request.headers.get('content-length')) return s3Error(400, 'IncompleteBody')
      const headers: Record<string, string> = {}
      request.headers.forEach((value, name) => (headers[name] = value))
      objects.set(key, { body, contentType: request.headers.get('content-type') ?? '', headers })
      return new Response(null, { status: 200, headers: { etag: `"${createHash('md5').update(body).digest('hex')}"` } })
    }
    if (request.method === 'GET') {
      const object = objects.get(key)
      return object ? new Response(object.body, { headers: { 'content-type': object.contentType } }) : s3Error(404, 'NoSuchKey')
    }
    return s3Error(405, 'MethodNotAllowed')
  }

  return { handler, objects }
}
