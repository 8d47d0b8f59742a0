import { createExecutionContext, env, runInDurableObject, SELF, waitOnExecutionContext } from 'cloudflare:test'
import { expect } from 'vitest'
import type { Env } from '../../worker/env.js'
import worker from '../../worker/index.js'
import { fleetStub, headersFor, type Who } from './broker-support.js'

/**
 * Helpers for the security tests (security-*.test.ts): they attack the broker
 * through its public surface (HTTP through the edge, control frames) and only
 * reach inside for settings, the platform's own storage size, and to count the work a
 * request makes the Fleet object do (`recordWork`).
 */

export async function edgeFetch(request: Request, settings: Record<string, string | undefined>): Promise<Response> {
  const ctx = createExecutionContext()
  const response = await worker.fetch(request, { ...env, ...settings } as Env, ctx)
  await waitOnExecutionContext(ctx)
  return response
}

/** A static pool of `n` documentation addresses (never dialled). */
export const staticPool = (n: number, prefix = 'sec', extra: Record<string, unknown> = {}): string =>
  JSON.stringify(Array.from({ length: n }, (_, i) => ({ name: `${prefix}-${i}`, host: `198.51.100.${(i % 250) + 1}`, port: 22, ...extra })))

/** A request body of `totalBytes` with no Content-Length (chunked), counting how much the broker pulled. */
export function countingStream(totalBytes: number, chunkBytes = 64 * 1024): { body: ReadableStream<Uint8Array>; pulled(): number } {
  let sent = 0
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= totalBytes) return controller.close()
      const size = Math.min(chunkBytes, totalBytes - sent)
      // JSON-ish filler: a string that never closes, so nothing can parse early.
      const chunk = new Uint8Array(size).fill(0x61)
      if (sent === 0) chunk.set(new TextEncoder().encode('{"x":"'))
      sent += size
      controller.enqueue(chunk)
    },
  })
  return { body, pulled: () => sent }
}

/** POSTs a chunked body through the edge; resolves with the response and how many bytes were pulled. */
export async function postChunked(who: Who, path: string, totalBytes: number): Promise<{ status: number; body: any; pulled: number }> {
  const stream = countingStream(totalBytes)
  const response = await SELF.fetch(`https://broker.test${path}`, {
    method: 'POST',
    headers: { ...headersFor(who), 'content-type': 'application/json' },
    body: stream.body,
    // @ts-expect-error undici/workerd option for streamed request bodies
    duplex: 'half',
  })
  const text = await response.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = text
  }
  return { status: response.status, body, pulled: stream.pulled() }
}

/** The Fleet object's SQLite size in bytes (the platform's own number). */
export function databaseSize(): Promise<number> {
  return runInDurableObject(fleetStub(), (_instance, state) => state.storage.sql.databaseSize)
}

/** One SQL statement the Fleet object ran, and what it moved. */
export interface SqlStatement {
  query: string
  /** UTF-8 bytes of the bound values (strings, blobs; 8 per number). */
  boundBytes: number
  /** The same for every value of every returned row. */
  returnedBytes: number
  rowsRead: number
  rowsWritten: number
}

/** What the Fleet object did while `recordWork` ran: the work a request costs, in units that do not depend on the machine. */
export interface BrokerWork {
  statements: SqlStatement[]
  /** Sockets handed out by `ctx.getWebSockets` (the object walking its sockets). */
  socketsListed: number
  /** Socket attachments read (`deserializeAttachment`): sockets visited. */
  socketsVisited: number
}

/** The statements' rows and bytes, summed. */
export function sqlTotals(work: BrokerWork): { statements: number; rowsRead: number; rowsWritten: number; bytes: number } {
  return work.statements.reduce(
    (sum, s) => ({
      statements: sum.statements + 1,
      rowsRead: sum.rowsRead + s.rowsRead,
      rowsWritten: sum.rowsWritten + s.rowsWritten,
      bytes: sum.bytes + s.boundBytes + s.returnedBytes,
    }),
    { statements: 0, rowsRead: 0, rowsWritten: 0, bytes: 0 },
  )
}

function valueBytes(value: unknown): number {
  if (typeof value === 'string') return new TextEncoder().encode(value).length
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return value.byteLength
  return typeof value === 'number' || typeof value === 'bigint' ? 8 : 0
}

/** Replaces `target[key]` with an own property; the returned function puts the old state back. */
function patch(target: object, key: string, value: unknown): () => void {
  const own = Object.getOwnPropertyDescriptor(target, key)
  Object.defineProperty(target, key, { value, configurable: true, writable: true })
  return () => (own ? Object.defineProperty(target, key, own) : Reflect.deleteProperty(target, key))
}

/**
 * Runs `fn` (requests through the edge, one at a time) with the Fleet object's SQL and socket
 * walks counted, then puts everything back. Works because the object's storage module calls
 * `exec` through the one `state.storage.sql` object, and the object runs in the test's isolate
 * (so the shared WebSocket prototype sees its sockets). Nothing else may run meanwhile.
 */
export async function recordWork<T>(fn: () => Promise<T>): Promise<{ result: T; work: BrokerWork }> {
  const work: BrokerWork = { statements: [], socketsListed: 0, socketsVisited: 0 }
  const restore = await runInDurableObject(fleetStub(), (_instance, state) => {
    const sql = state.storage.sql
    const exec = sql.exec
    const getWebSockets = state.getWebSockets
    const deserialize = WebSocket.prototype.deserializeAttachment
    const restores = [
      patch(sql, 'exec', (query: string, ...bindings: unknown[]) => {
        const cursor = exec.call(sql, query, ...bindings)
        const rows = cursor.toArray()
        work.statements.push({
          query,
          boundBytes: bindings.reduce<number>((sum, value) => sum + valueBytes(value), 0),
          returnedBytes: rows.reduce<number>((sum, row) => sum + Object.values(row).reduce<number>((n, v) => n + valueBytes(v), 0), 0),
          rowsRead: cursor.rowsRead,
          rowsWritten: cursor.rowsWritten,
        })
        // What the storage module uses of a cursor (toArray, rowsWritten), over the rows already read.
        const { rowsRead, rowsWritten } = cursor
        return { toArray: () => rows, one: () => rows[0], rowsRead, rowsWritten, [Symbol.iterator]: () => rows.values() }
      }),
      patch(state, 'getWebSockets', (tag?: string) => {
        const sockets = getWebSockets.call(state, tag)
        work.socketsListed += sockets.length
        return sockets
      }),
      patch(WebSocket.prototype, 'deserializeAttachment', function (this: WebSocket) {
        work.socketsVisited++
        return deserialize.call(this)
      }),
    ]
    return () => restores.forEach((undo) => undo())
  })
  try {
    return { result: await fn(), work }
  } finally {
    await runInDurableObject(fleetStub(), () => restore())
  }
}

/** An API error body: `{error, message}` with non-empty strings. */
export const apiErrorShape = { error: expect.any(String), message: expect.any(String) }
