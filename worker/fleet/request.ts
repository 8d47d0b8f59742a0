import * as v from 'valibot'
import { ApiError, ErrorCode, describeIssues } from '../../src/protocol/errors.js'
import { readBodyText } from '../body-limit.js'
import type { FleetContext } from './deps.js'

/** Request parsing: every body, query and path param goes through a schema. */

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024

export interface BodyOptions {
  maxBytes?: number
  /** An empty body counts as `{}` (heartbeat, release and share DELETE accept no body). */
  optional?: boolean
}

/** Counted off the stream: a body past `maxBytes` is cancelled, never read whole (413). */
function readBody(c: FleetContext, maxBytes: number): Promise<string> {
  return readBodyText(c.req.raw, maxBytes)
}

function validate<S extends v.GenericSchema>(schema: S, value: unknown, where: string): v.InferOutput<S> {
  const result = v.safeParse(schema, value)
  if (!result.success) throw new ApiError(400, ErrorCode.invalidRequest, `invalid ${where}: ${describeIssues(result.issues)}`)
  return result.output
}

/** Parses and validates a JSON object body. */
export async function jsonBody<S extends v.GenericSchema>(
  c: FleetContext,
  schema: S,
  options: BodyOptions = {},
): Promise<v.InferOutput<S>> {
  const text = await readBody(c, options.maxBytes ?? DEFAULT_MAX_BODY_BYTES)
  let value: unknown
  if (options.optional && text.trim() === '') value = {}
  else {
    try {
      value = JSON.parse(text)
    } catch {
      throw new ApiError(
        400,
        ErrorCode.invalidJson,
        text.trim() === '' ? 'a JSON request body is required' : 'the request body is not valid JSON',
      )
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ApiError(400, ErrorCode.invalidJson, 'the request body must be a JSON object')
  return validate(schema, value, 'request body')
}

/** Parses and validates a browser form body (`application/x-www-form-urlencoded`); a repeated field keeps its first value. */
export async function formBody<S extends v.GenericSchema>(
  c: FleetContext,
  schema: S,
  options: BodyOptions = {},
): Promise<v.InferOutput<S>> {
  const text = await readBody(c, options.maxBytes ?? DEFAULT_MAX_BODY_BYTES)
  const fields: Record<string, string> = {}
  for (const [name, value] of new URLSearchParams(text)) fields[name] ??= value
  return validate(schema, fields, 'form')
}

export function queryParams<S extends v.GenericSchema>(c: FleetContext, schema: S): v.InferOutput<S> {
  return validate(schema, c.req.query(), 'query')
}

export function pathParam<S extends v.GenericSchema>(c: FleetContext, name: string, schema: S): v.InferOutput<S> {
  return validate(schema, c.req.param(name), `path parameter ${name}`)
}

/** Admin routes answer 403 for everyone else (checked before the route runs). */
export function requireAdmin(c: FleetContext): void {
  if (!c.get('identity').admin) throw new ApiError(403, ErrorCode.forbidden, 'admin token required')
}
