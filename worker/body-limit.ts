import { ApiError, ErrorCode } from '../src/protocol/errors.js'

/**
 * Request bodies are counted off the stream, whatever their framing (Content-Length
 * or chunked): nothing past a limit is ever read or kept. The object reads with
 * readBodyText and cancels what it refuses; the edge's side is in edge-body.ts.
 */

/** The largest body anyone reads: the edge forwards no more, and no route allows more. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024

export function bodyTooLarge(maxBytes: number): ApiError {
  return new ApiError(413, ErrorCode.payloadTooLarge, `request body is larger than ${maxBytes} bytes`)
}

/** Cancels a body nobody will read (never drains it: it may be endless). */
export async function discardBody(request: Request): Promise<void> {
  if (request.body && !request.bodyUsed) await request.body.cancel(new Error('request body not read')).catch(() => undefined)
}

/** A declared Content-Length over the limit (a chunked body declares none). */
export function declaresMoreThan(request: Request, maxBytes: number): boolean {
  return Number(request.headers.get('content-length') ?? '0') > maxBytes
}

/**
 * Reads a request body as UTF-8 text, at most `limit` bytes of it (and never more
 * than MAX_BODY_BYTES: the edge counts on that, see edge-body.ts): past that the rest
 * is cancelled, not read, and the read answers 413. A body the sender cut off
 * answers 400.
 */
export async function readBodyText(request: Request, limit: number): Promise<string> {
  const maxBytes = Math.min(limit, MAX_BODY_BYTES)
  if (declaresMoreThan(request, maxBytes)) {
    await discardBody(request)
    throw bodyTooLarge(maxBytes)
  }
  if (!request.body) return ''
  const reader = request.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    let next: ReadableStreamReadResult<Uint8Array>
    try {
      next = await reader.read()
    } catch {
      throw new ApiError(400, ErrorCode.invalidRequest, 'the request body was cut off before its end')
    }
    if (next.done) break
    total += next.value.byteLength
    if (total > maxBytes) {
      await reader.cancel(bodyTooLarge(maxBytes)).catch(() => undefined)
      throw bodyTooLarge(maxBytes)
    }
    chunks.push(next.value)
  }
  const bytes = new Uint8Array(total)
  let at = 0
  for (const chunk of chunks) {
    bytes.set(chunk, at)
    at += chunk.byteLength
  }
  return new TextDecoder().decode(bytes)
}
