import { createExecutionContext, env, runInDurableObject, SELF, waitOnExecutionContext } from 'cloudflare:test'
import { expect } from 'vitest'
import type { Env } from '../../worker/env.js'
import worker from '../../worker/index.js'
import { fleetStub, headersFor, type Who } from './broker-support.js'

/**
 * Helpers for the security tests (security-*.test.ts): they attack the broker
 * through its public surface (HTTP through the edge, control frames) and only
 * reach inside for settings and for the platform's own storage size.
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

/** Milliseconds one call takes. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await fn()
  return performance.now() - started
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** An API error body: `{error, message}` with non-empty strings. */
export const apiErrorShape = { error: expect.any(String), message: expect.any(String) }
