import * as v from 'valibot'
import { LEASE_ID_PATTERN, RUN_ID_PATTERN } from './ids.js'
import { LeaseTelemetry } from './leases.js'

/**
 * Run history wire shapes: run records, events, logs, telemetry and test results.
 * Request schemas normalise what clients send (trim, byte-bound, drop unknown
 * enum values) but reject wrong JSON types with a 400, never a 500.
 */

export const RunId = v.pipe(v.string(), v.regex(RUN_ID_PATTERN, 'run ID must look like run_<12 hex>'))

/** Limits the broker applies; exported so the CLI can bound what it sends the same way. */
export const RUN_LIMITS = {
  eventField: 128,
  eventText: 16_384,
  eventsPageDefault: 500,
  eventsPageMax: 500,
  listDefault: 50,
  listMax: 500,
  logMaxBytes: 8 * 1024 * 1024,
  logChunkBytes: 64 * 1024,
  resultFiles: 50,
  resultFailures: 100,
  resultText: 4096,
  commandArgs: 1024,
} as const

const encoder = new TextEncoder()

export function utf8Length(text: string): number {
  return encoder.encode(text).byteLength
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text
  const bytes = encoder.encode(text)
  if (bytes.byteLength <= maxBytes) return text
  let end = maxBytes
  // Back up over continuation bytes (10xxxxxx) so the cut lands on a character start.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return new TextDecoder().decode(bytes.subarray(0, end))
}

/** Keeps the last `maxBytes` UTF-8 bytes of `text`, starting on a character boundary. */
export function tailUtf8(text: string, maxBytes: number): string {
  const bytes = encoder.encode(text)
  if (bytes.byteLength <= maxBytes) return text
  let start = bytes.byteLength - maxBytes
  while (start < bytes.byteLength && (bytes[start]! & 0xc0) === 0x80) start++
  return new TextDecoder().decode(bytes.subarray(start))
}

const absent = <T>(value: T | null | undefined): value is T => value !== undefined && value !== null

/** Optional string on input: null counts as absent; trimmed; bounded; empty → absent. */
const boundedText = (maxBytes: number, trim = true) =>
  v.pipe(
    v.nullish(v.string()),
    v.transform((value) => {
      if (!absent(value)) return undefined
      const text = truncateUtf8(trim ? value.trim() : value, maxBytes)
      return text === '' ? undefined : text
    }),
  )

/** Optional enum on input: values outside the list are dropped, not rejected. */
const lenientPick = <const T extends readonly string[]>(options: T) =>
  v.pipe(
    v.nullish(v.string()),
    v.transform((value) => (absent(value) && (options as readonly string[]).includes(value) ? (value as T[number]) : undefined)),
  )

const finiteNumber = v.pipe(
  v.nullish(v.number()),
  v.transform((value) => (absent(value) && Number.isFinite(value) ? value : undefined)),
)

const leaseIdIfValid = v.pipe(
  v.nullish(v.string()),
  v.transform((value) => (absent(value) && LEASE_ID_PATTERN.test(value) ? value : undefined)),
)

// Providers are an open set for us (local, ssh, static, hetzner, aws ...): keep any short slug.
const providerName = v.pipe(
  v.nullish(v.string()),
  v.transform((value) => (absent(value) && /^[a-z0-9][a-z0-9-]{0,31}$/.test(value.trim()) ? value.trim() : undefined)),
)

export const TARGETS = ['linux', 'macos', 'windows'] as const
export const WINDOWS_MODES = ['normal', 'wsl2'] as const
export const RUN_STATES = ['running', 'succeeded', 'failed'] as const

// ---------------------------------------------------------------------------
// Telemetry: samples are lease telemetry, sanitised by the same function as heartbeats.

export const RunTelemetry = v.object({
  start: v.optional(LeaseTelemetry),
  end: v.optional(LeaseTelemetry),
  samples: v.optional(v.array(LeaseTelemetry)),
})
export type RunTelemetry = v.InferOutput<typeof RunTelemetry>

// ---------------------------------------------------------------------------
// Test results

export const TestFailure = v.object({
  suite: v.string(),
  name: v.string(),
  classname: v.optional(v.string()),
  file: v.optional(v.string()),
  message: v.optional(v.string()),
  type: v.optional(v.string()),
  kind: v.picklist(['failure', 'error']),
})
export type TestFailure = v.InferOutput<typeof TestFailure>

export const TestResultSummary = v.object({
  format: v.string(),
  files: v.array(v.string()),
  suites: v.number(),
  tests: v.number(),
  failures: v.number(),
  errors: v.number(),
  skipped: v.number(),
  timeSeconds: v.number(),
  failed: v.array(TestFailure),
})
export type TestResultSummary = v.InferOutput<typeof TestResultSummary>

const resultText = v.pipe(
  v.nullish(v.string()),
  v.transform((value) => (absent(value) ? truncateUtf8(value, RUN_LIMITS.resultText) : undefined)),
)
const count = v.nullish(v.number(), 0)
const requiredText = v.pipe(
  v.nullish(v.string(), ''),
  v.transform((value) => truncateUtf8(value, RUN_LIMITS.resultText)),
)

const TestFailureInput = v.object({
  suite: requiredText,
  name: requiredText,
  classname: resultText,
  file: resultText,
  message: resultText,
  type: resultText,
  kind: v.pipe(
    v.nullish(v.string(), 'failure'),
    v.transform((value) => (value === 'error' ? ('error' as const) : ('failure' as const))),
  ),
})

/** Finish `results`: bounded (first 50 files, first 100 failures, 4 KiB strings), null arrays → []. */
const TestResultSummaryInput = v.object({
  format: v.pipe(
    v.nullish(v.string(), 'junit'),
    v.transform((value) => truncateUtf8(value, RUN_LIMITS.eventField)),
  ),
  files: v.pipe(
    v.nullish(v.array(v.string()), []),
    v.transform((files) => files.slice(0, RUN_LIMITS.resultFiles).map((file) => truncateUtf8(file, RUN_LIMITS.resultText))),
  ),
  suites: count,
  tests: count,
  failures: count,
  errors: count,
  skipped: count,
  timeSeconds: count,
  failed: v.pipe(
    v.nullish(v.array(v.unknown()), []),
    v.transform((failed) => failed.slice(0, RUN_LIMITS.resultFailures)),
    v.array(TestFailureInput),
  ),
})

// ---------------------------------------------------------------------------
// Records

export const RunEventRecord = v.object({
  runID: v.string(),
  seq: v.number(),
  type: v.string(),
  phase: v.optional(v.string()),
  stream: v.optional(v.picklist(['stdout', 'stderr'])),
  message: v.optional(v.string()),
  data: v.optional(v.string()),
  leaseID: v.optional(v.string()),
  slug: v.optional(v.string()),
  provider: v.optional(v.string()),
  target: v.optional(v.string()),
  windowsMode: v.optional(v.string()),
  class: v.optional(v.string()),
  serverType: v.optional(v.string()),
  exitCode: v.optional(v.number()),
  createdAt: v.string(),
})
export type RunEventRecord = v.InferOutput<typeof RunEventRecord>

export const RunRecord = v.object({
  id: v.string(),
  leaseID: v.string(),
  slug: v.optional(v.string()),
  owner: v.string(),
  org: v.string(),
  provider: v.string(),
  target: v.string(),
  windowsMode: v.optional(v.string()),
  class: v.string(),
  serverType: v.string(),
  command: v.array(v.string()),
  state: v.picklist(RUN_STATES),
  phase: v.optional(v.string()),
  exitCode: v.optional(v.number()),
  syncMs: v.optional(v.number()),
  commandMs: v.optional(v.number()),
  durationMs: v.optional(v.number()),
  logBytes: v.number(),
  logTruncated: v.boolean(),
  results: v.optional(TestResultSummary),
  telemetry: v.optional(RunTelemetry),
  startedAt: v.string(),
  lastEventAt: v.optional(v.string()),
  eventCount: v.optional(v.number()),
  endedAt: v.optional(v.string()),
})
export type RunRecord = v.InferOutput<typeof RunRecord>

// ---------------------------------------------------------------------------
// Requests

const field = boundedText(RUN_LIMITS.eventField)

export const CreateRunRequest = v.object({
  /** `""` or a lease ID; anything else is answered 400 `invalid_lease_id` by the broker. */
  leaseID: v.pipe(v.nullish(v.string(), ''), v.maxLength(128)),
  provider: providerName,
  target: lenientPick(TARGETS),
  windowsMode: lenientPick(WINDOWS_MODES),
  class: field,
  serverType: field,
  command: v.pipe(
    v.nullish(v.array(v.union([v.string(), v.number(), v.boolean()])), []),
    v.maxLength(RUN_LIMITS.commandArgs, `command may have at most ${RUN_LIMITS.commandArgs} arguments`),
    v.transform((args) => args.map(String)),
  ),
})
export type CreateRunRequest = v.InferOutput<typeof CreateRunRequest>

export const RunEventRequest = v.object({
  type: v.pipe(
    v.nullish(v.string(), ''),
    v.transform((value) => truncateUtf8(value.trim(), RUN_LIMITS.eventField) || 'event'),
  ),
  phase: field,
  stream: lenientPick(['stdout', 'stderr'] as const),
  message: boundedText(RUN_LIMITS.eventText, false),
  data: boundedText(RUN_LIMITS.eventText, false),
  leaseID: leaseIdIfValid,
  slug: field,
  provider: providerName,
  target: lenientPick(TARGETS),
  windowsMode: lenientPick(WINDOWS_MODES),
  class: field,
  serverType: field,
  exitCode: finiteNumber,
})
export type RunEventRequest = v.InferOutput<typeof RunEventRequest>

export const RunTelemetryRequest = v.object({ telemetry: v.looseObject({}, 'an object of telemetry metrics') })

export const FinishRunRequest = v.object({
  exitCode: v.pipe(
    v.nullish(v.number(), 1),
    v.transform((value) => (Number.isFinite(value) ? Math.trunc(value) : 1)),
  ),
  syncMs: finiteNumber,
  commandMs: finiteNumber,
  log: v.nullish(v.string(), ''),
  logChunks: v.nullish(v.array(v.string()), []),
  logTruncated: v.nullish(v.boolean(), false),
  results: v.nullish(TestResultSummaryInput),
  // Samples inside are sanitised one by one (bad ones dropped), but the container must be an object.
  telemetry: v.nullish(
    v.pipe(
      v.custom<Record<string, unknown>>(
        (value) => typeof value === 'object' && value !== null && !Array.isArray(value),
        'must be a JSON object',
      ),
      v.transform((value) => ({
        start: value.start,
        end: value.end,
        samples: Array.isArray(value.samples) ? (value.samples as unknown[]) : [],
      })),
    ),
  ),
})
export type FinishRunRequest = v.InferOutput<typeof FinishRunRequest>

const queryInt = (min: number, fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  v.pipe(
    v.optional(v.string(), ''),
    v.transform((value) => (value === '' ? String(fallback) : value)),
    v.regex(/^\d{1,15}$/, 'must be a non-negative integer'),
    v.transform(Number),
    v.minValue(min),
    v.transform((value) => Math.min(value, max)),
  )

export const ListRunsQuery = v.object({
  leaseID: v.optional(v.pipe(v.string(), v.maxLength(128))),
  owner: v.optional(v.pipe(v.string(), v.maxLength(320))),
  org: v.optional(v.pipe(v.string(), v.maxLength(128))),
  state: v.optional(v.picklist(RUN_STATES)),
  limit: queryInt(1, RUN_LIMITS.listDefault, RUN_LIMITS.listMax),
  cursor: v.optional(v.pipe(v.string(), v.maxLength(256))),
})
export type ListRunsQuery = v.InferOutput<typeof ListRunsQuery>

export const RunEventsQuery = v.object({
  after: queryInt(0, 0),
  limit: queryInt(1, RUN_LIMITS.eventsPageDefault, RUN_LIMITS.eventsPageMax),
})
export type RunEventsQuery = v.InferOutput<typeof RunEventsQuery>

// ---------------------------------------------------------------------------
// Responses

export const RunResponse = v.object({ run: RunRecord })
/** `nextCursor` is present when more runs match; pass it back as `?cursor=`. */
export const RunListResponse = v.object({ runs: v.array(RunRecord), nextCursor: v.optional(v.string()) })
/** `nextSeq` is set when the broker ended the page early (its byte bound): ask again with `after=nextSeq`. */
export const RunEventsResponse = v.object({ events: v.array(RunEventRecord), nextSeq: v.optional(v.number()) })
export const RunEventResponse = v.object({ event: RunEventRecord })
