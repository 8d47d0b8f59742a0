import type { LeaseTelemetry } from '../../protocol/leases.js'
import {
  RunResponse,
  RUN_LIMITS,
  tailUtf8,
  type CreateRunRequest,
  type RunEventRequest,
  type RunTelemetry,
  type TestResultSummary,
} from '../../protocol/runs.js'
import type { BrokerClient } from '../../transport/broker/client.js'
import type { Progress } from '../../ui/progress.js'

/** Output events per run stop here; `crabbox logs` has the whole retained log. */
const OUTPUT_EVENT_CAP = 64 * 1024
const EVENT_CHUNK = RUN_LIMITS.eventText
const LOG_RETAIN = RUN_LIMITS.logMaxBytes
const POST_TIMEOUT_MS = 2000
const FLUSH_MS = 100
const QUEUE_MAX = 256

export type RunEvent = Omit<Partial<RunEventRequest>, 'type'> & { type: string }

export interface FinishInput {
  exitCode: number
  syncMs?: number
  commandMs?: number
  /** The parsed JUnit summary (`--junit`). */
  results?: TestResultSummary
  telemetry?: RunTelemetry
}

/** Says once per run that the broker is in trouble; recording and heartbeats share it. */
export type BrokerNotice = (error: unknown) => void

export function brokerNotice(progress: Progress): BrokerNotice {
  let said = false
  return (error) => {
    if (said) return
    said = true
    progress.warn(`broker unreachable; the command goes on without recording or heartbeats: ${(error as Error).message}`)
  }
}

/** What the pipeline records; the no-broker recorder makes every call free. */
export interface Recorder {
  readonly runId?: string
  event(event: RunEvent): void
  output(stream: 'stdout' | 'stderr', chunk: Buffer): void
  finish(input: FinishInput): Promise<void>
  /** Sends one runner telemetry sample (`POST /v1/runs/{id}/telemetry`); failures are silent. */
  telemetry(sample: LeaseTelemetry): Promise<void>
  /** Waits (briefly, bounded) for queued events to reach the broker. */
  settle(): Promise<void>
}

export const nullRecorder: Recorder = { event() {}, output() {}, async finish() {}, async telemetry() {}, async settle() {} }

/** A recorder that records nothing until `begin`: a run is only recorded once it has a lease. */
export interface DeferredRecorder extends Recorder {
  /** Creates the run record for this lease (once) and sends the events queued so far. */
  begin(lease: { id: string; provider: string }): Promise<void>
}

const EARLY_EVENTS_MAX = 32

/**
 * Holds the run's first events (leasing, the lease) until a lease exists, then
 * starts the real recorder with that lease and replays them. A run that fails
 * before it has a lease (an unknown `--id`, no capacity) leaves no record.
 */
export function deferredRecorder(start: (lease: { id: string; provider: string }) => Promise<Recorder>): DeferredRecorder {
  let inner: Recorder | undefined
  let starting: Promise<void> | undefined
  const early: RunEvent[] = []
  return {
    get runId() {
      return inner?.runId
    },
    event(event) {
      if (inner) inner.event(event)
      else if (early.length < EARLY_EVENTS_MAX) early.push(event)
    },
    output(stream, chunk) {
      inner?.output(stream, chunk)
    },
    begin(lease) {
      starting ??= start(lease).then((recorder) => {
        inner = recorder
        for (const event of early.splice(0)) recorder.event(event)
      })
      return starting
    },
    async finish(input) {
      await inner?.finish(input)
    },
    async telemetry(sample) {
      await inner?.telemetry(sample)
    },
    async settle() {
      await inner?.settle()
    },
  }
}

/**
 * Records a run on the broker off the hot path: events go into a bounded
 * queue drained by one background sender, output is batched into ≤16 KiB
 * events, and the first broker failure is said once on stderr and switches
 * recording off, so a slow or dead broker never slows or fails the command.
 */
export async function startRecorder(
  client: BrokerClient,
  request: CreateRunRequest,
  progress: Progress,
  notice: BrokerNotice,
): Promise<Recorder> {
  let runId: string
  try {
    runId = (await client.request('POST', '/v1/runs', { body: request, schema: RunResponse, timeoutMs: 10_000 })).run.id
  } catch (error) {
    notice(error)
    return nullRecorder
  }
  progress.info(`recording run ${runId}`)

  let broken = false
  const queue: RunEvent[] = []
  let sending: Promise<void> | undefined
  const fail = (error: unknown) => {
    if (broken) return
    broken = true
    queue.length = 0
    notice(error)
  }
  const drain = async () => {
    while (queue.length > 0 && !broken) {
      const event = queue.shift()!
      try {
        await client.request('POST', `/v1/runs/${runId}/events`, { body: event, timeoutMs: POST_TIMEOUT_MS })
      } catch (error) {
        fail(error)
      }
    }
    sending = undefined
  }
  const enqueue = (event: RunEvent) => {
    if (broken || queue.length >= QUEUE_MAX) return
    queue.push(event)
    sending ??= drain()
  }

  // Output: batched per stream, capped per run; the retained log keeps the tail.
  const pending: Record<'stdout' | 'stderr', Buffer[]> = { stdout: [], stderr: [] }
  let pendingBytes = 0
  let sentOutput = 0
  let truncated = false
  let flushTimer: NodeJS.Timeout | undefined
  const log: Buffer[] = []
  let logBytes = 0
  let logTruncated = false

  const flush = () => {
    if (flushTimer) clearTimeout(flushTimer)
    flushTimer = undefined
    for (const stream of ['stdout', 'stderr'] as const) {
      if (pending[stream].length === 0) continue
      let data = Buffer.concat(pending[stream])
      pending[stream] = []
      while (data.length > 0 && !truncated) {
        const room = OUTPUT_EVENT_CAP - sentOutput
        if (room <= 0) {
          truncated = true
          enqueue({
            type: 'output.truncated',
            phase: 'command',
            message: `stdout/stderr event capture capped at ${OUTPUT_EVENT_CAP} bytes; use crabbox logs for retained command output`,
          })
          break
        }
        const piece = utf8Prefix(data, Math.min(EVENT_CHUNK, room))
        sentOutput += piece.length
        enqueue({ type: stream, stream, data: piece.toString('utf8') })
        data = data.subarray(piece.length)
      }
    }
    pendingBytes = 0
  }

  // Give queued events a moment, never more: the user is waiting for their prompt.
  const settle = async () => {
    if (sending) await Promise.race([sending, new Promise((r) => setTimeout(r, 2000).unref())])
  }

  return {
    runId,
    event: enqueue,
    output(stream, chunk) {
      log.push(chunk)
      logBytes += chunk.length
      while (logBytes > LOG_RETAIN && log.length > 1) {
        logBytes -= log.shift()!.length
        logTruncated = true
      }
      if (truncated || broken) return
      pending[stream].push(chunk)
      pendingBytes += chunk.length
      if (pendingBytes >= EVENT_CHUNK) flush()
      else flushTimer ??= setTimeout(flush, FLUSH_MS)
    },
    settle,
    async telemetry(sample) {
      if (broken) return
      // A lost sample is no loss: not a broker notice, the run goes on.
      await client
        .request('POST', `/v1/runs/${runId}/telemetry`, { body: { telemetry: sample }, timeoutMs: POST_TIMEOUT_MS })
        .catch(() => {})
    },
    async finish(input) {
      flush()
      await settle()
      if (broken) return
      const text = tailUtf8(Buffer.concat(log).toString('utf8'), LOG_RETAIN)
      const chunks: string[] = []
      for (let at = 0; at < text.length; at += RUN_LIMITS.logChunkBytes / 4) chunks.push(text.slice(at, at + RUN_LIMITS.logChunkBytes / 4))
      try {
        await client.request('POST', `/v1/runs/${runId}/finish`, {
          // The input is exitCode, syncMs, commandMs, results, telemetry: undefined ones are left out of the JSON.
          body: { ...input, log: tailUtf8(text, RUN_LIMITS.logChunkBytes), logChunks: chunks, logTruncated },
          timeoutMs: 10_000,
        })
      } catch (error) {
        fail(error)
      }
    },
  }
}

/** The longest prefix of `data` of at most `max` bytes that does not split a UTF-8 character. */
function utf8Prefix(data: Buffer, max: number): Buffer {
  if (data.length <= max) return data
  let end = max
  while (end > 0 && (data[end] & 0xc0) === 0x80) end--
  return data.subarray(0, end || max)
}
