import { MAX_BODY_BYTES } from './body-limit.js'

/**
 * The edge's side of the body limit. The edge reads at most MAX_BODY_BYTES of any
 * upload, whatever its framing, and keeps none of it: what it reads goes on to the
 * object as a stream, or is thrown away.
 *
 * Throwing away is for answers given before the upload ended (the object refused it
 * at its route limit, answered 404, or the edge answered 401): over HTTP/1.1 a server
 * that closes while the client is still sending makes the client's socket reset, and
 * the client loses the answer. So the edge keeps taking the upload, without keeping
 * it, while the answer goes out (the answer's body ends when it stops), for at most
 * LINGER_MS and never past MAX_BODY_BYTES in all; then it cancels the upload.
 */

/** How long the edge keeps taking an upload it will not use, so the client sees the answer. */
const LINGER_MS = 1000

type Reader = ReadableStreamDefaultReader<Uint8Array>

/** The next chunk, or undefined when `deadline` (ms since the epoch) passed first; then the upload is cancelled. */
async function readBefore(reader: Reader, deadline: number): Promise<ReadableStreamReadResult<Uint8Array> | undefined> {
  if (deadline === Infinity) return reader.read()
  let timer: number | undefined
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))))
  try {
    const next = await Promise.race([reader.read(), late])
    if (!next) await reader.cancel(new Error('upload not read to its end')).catch(() => undefined)
    return next
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
}

/** Takes and drops an upload nobody will use, within the linger bounds; `seen` bytes were already read. */
async function linger(reader: Reader, seen: number): Promise<void> {
  const deadline = Date.now() + LINGER_MS
  for (;;) {
    const next = await readBefore(reader, deadline)
    if (!next || next.done) return
    seen += next.value.byteLength
    if (seen > MAX_BODY_BYTES || Date.now() >= deadline) return reader.cancel(new Error('upload not read to its end'))
  }
}

export interface ForwardedBody {
  /** What the object reads: the upload, ended one byte past MAX_BODY_BYTES when it is larger. */
  body: ReadableStream<Uint8Array>
  /** The upload went past MAX_BODY_BYTES: the answer is 413, whatever the object made of it. */
  exceeded(): boolean
  /** The object answered: what it did not read of the upload is thrown away (lingering). */
  answered(): void
  /** Cancels the upload now, lingering or not. */
  stop(): void
  /** The edge still reads the upload (the object stopped early and the edge lingers). */
  reading(): boolean
  /** Settles once the edge stopped reading the upload. */
  done: Promise<void>
}

/**
 * Passes `upload` on to the object through a counter. Past MAX_BODY_BYTES the upload
 * is cancelled and the copy ends one byte past the limit: the object, whose own count
 * never allows more (readBodyText), refuses it like any oversized body. Once the
 * object answered (or stopped reading), the edge lingers on the rest (see above).
 *
 * The copy is this function's own loop into a runtime-native stream and ends without
 * an abort in every case but a sender that went away: a pipe the runtime runs, or an
 * abort, is reported by the runtime as an uncaught error.
 */
export function forwardBody(upload: ReadableStream<Uint8Array>): ForwardedBody {
  const pipe = new IdentityTransformStream()
  const writer = pipe.writable.getWriter()
  const reader = upload.getReader()
  let seen = 0
  let exceeded = false
  let reading = true
  let answered!: () => void
  const objectAnswered = new Promise<'answered'>((resolve) => (answered = () => resolve('answered')))
  /** Writes one chunk; false once the object answered or stopped reading. */
  const forward = async (chunk: Uint8Array): Promise<boolean> => {
    const written = writer.write(chunk).then(
      () => 'written' as const,
      () => 'answered' as const,
    )
    return (await Promise.race([written, objectAnswered])) === 'written'
  }
  const copy = async (): Promise<void> => {
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>
      try {
        next = await reader.read()
      } catch {
        // The sender went away mid-body: the object must see an error, not a short body.
        return writer.abort(new Error('the upload was cut off')).catch(() => undefined)
      }
      if (next.done) return writer.close()
      const room = MAX_BODY_BYTES + 1 - seen
      seen += next.value.byteLength
      if (seen > MAX_BODY_BYTES) {
        exceeded = true
        await reader.cancel(new Error('upload over the edge limit'))
        if (await forward(next.value.subarray(0, room))) await writer.close()
        return
      }
      if (!(await forward(next.value))) return linger(reader, seen)
    }
  }
  const done = copy()
    .catch(() => reader.cancel(new Error('upload not read to its end')).catch(() => undefined))
    .finally(() => (reading = false))
  const stop = () => void reader.cancel(new Error('upload not read to its end')).catch(() => undefined)
  return { body: pipe.readable, exceeded: () => exceeded, answered, stop, reading: () => reading, done }
}

/**
 * An error answer whose body ends only once `done` settles (the edge reads the upload
 * meanwhile). It carries its Content-Length, so the client has the whole answer at
 * once, even through a proxy that ends the body only after the upload.
 */
export async function answerAfter(response: Response, done: Promise<void>): Promise<Response> {
  const bytes = new Uint8Array(await response.arrayBuffer())
  const { readable, writable } = new FixedLengthStream(bytes.byteLength)
  const writer = writable.getWriter()
  const send = async () => {
    await writer.write(bytes)
    await done
    await writer.close()
  }
  send().catch(() => writer.abort(new Error('answer not sent')).catch(() => undefined))
  return new Response(readable, response)
}

/** An error answer the edge gives before reading the upload: it lingers on the upload while the answer goes out. */
export function answerUnread(response: Response, request: Request): Promise<Response> {
  if (!request.body || request.bodyUsed) return Promise.resolve(response)
  return answerAfter(
    response,
    linger(request.body.getReader(), 0).catch(() => undefined),
  )
}
