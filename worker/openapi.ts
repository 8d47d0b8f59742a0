import { toJsonSchemaDefs, type JsonSchema } from '@valibot/to-json-schema'
import type * as v from 'valibot'
import * as authWire from '../src/protocol/auth.js'
import * as controlWire from '../src/protocol/control.js'
import * as errorWire from '../src/protocol/errors.js'
import * as leaseWire from '../src/protocol/leases.js'
import * as runWire from '../src/protocol/runs.js'
import * as usageWire from '../src/protocol/usage.js'
import type { RouteDoc } from './fleet/route-doc.js'

/**
 * The broker's OpenAPI 3.1 description, built from the route table and the
 * valibot schemas the handlers validate with, so the wire reference cannot
 * drift from what the broker accepts. Pure: runs in workerd and in Node.
 *
 * Conventions beyond the RouteDoc fields:
 * - every valibot schema exported by the wire modules becomes a named component
 *   (`ErrorBody` is published as `Error`); anything else is inlined;
 * - schemas are described on their input side (what a client sends or reads on
 *   the wire), before any transform; checks JSON Schema cannot express are left out;
 * - a `response` that is a string schema is a text body, of the media type named by
 *   `v.metadata({ contentMediaType })` or `text/plain`;
 * - on a websocket route, `body` and `response` describe the client and server frames.
 */

/** Version of the API description (the wire API itself is v1); docs/api.md and /v1/openapi.json say the same. */
export const API_VERSION = '1.0.0'

export interface OpenApiInfo {
  version: string
  serverUrl?: string
}

type Json = Record<string, unknown>

/** Wire modules whose exported schemas become components, by export name. */
const WIRE_MODULES: readonly Record<string, unknown>[] = [errorWire, leaseWire, runWire, usageWire, authWire, controlWire]
const RENAMED: Record<string, string> = { ErrorBody: 'Error' }

const isSchema = (value: unknown): value is v.GenericSchema =>
  typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'schema'

function wireDefinitions(): Record<string, v.GenericSchema> {
  const definitions: Record<string, v.GenericSchema> = {}
  const seen = new Set<unknown>()
  for (const module of WIRE_MODULES) {
    for (const [name, value] of Object.entries(module)) {
      if (!isSchema(value) || seen.has(value)) continue
      seen.add(value)
      definitions[RENAMED[name] ?? name] = value
    }
  }
  return definitions
}

/** Area of a route, in the order docs/api.md lists them. */
export const API_TAGS = [
  { name: 'leases', description: 'Lease a machine, keep it alive, share it, release it.' },
  { name: 'runs', description: 'Run history: records, events, logs, telemetry and results.' },
  { name: 'control', description: 'The control WebSocket: live run events and lease heartbeats.' },
  { name: 'usage', description: 'Spend and lease counts per month.' },
  { name: 'admin', description: 'Operator routes; they need an admin token.' },
  { name: 'auth', description: 'Who the caller is and the GitHub browser login.' },
  {
    name: 'portal',
    description:
      'The portal: HTML pages for people (session cookie from the portal sign-in, or a bearer token). Signed out, a page redirects to sign-in.',
  },
  { name: 'service', description: 'Health and this description.' },
] as const

export function routeTag(route: RouteDoc): (typeof API_TAGS)[number]['name'] {
  if (route.auth === 'admin') return 'admin'
  if (route.path === '/portal' || route.path.startsWith('/portal/')) return 'portal'
  const area = route.path.split('/')[2] ?? ''
  if (area === 'leases' || area === 'runs' || area === 'control' || area === 'usage') return area
  if (area === 'auth' || area === 'whoami') return 'auth'
  return 'service'
}

/**
 * Error statuses the generic rules (400 for input, 401/403 for auth, 404 for path
 * parameters, 413 for bodies) cannot see, by `METHOD path`.
 */
export const EXTRA_ERRORS: Readonly<Record<string, readonly number[]>> = {
  'POST /v1/leases': [409, 429],
  'POST /v1/leases/:id/heartbeat': [409],
  'POST /v1/leases/:id/release': [409],
  'PUT /v1/leases/:id/share': [403],
  'DELETE /v1/leases/:id/share': [403],
  'POST /v1/runs/:id/events': [413],
  'POST /v1/auth/github/start': [429],
  'POST /v1/auth/github/poll': [403],
  'PUT /v1/artifacts/objects/:key': [403],
  'GET /v1/artifacts/objects/:key': [403],
}

const ERROR_TEXT: Record<number, string> = {
  400: 'The request is not valid (bad JSON, a field of the wrong type or out of range).',
  401: 'No valid bearer token.',
  403: 'The caller may not do this (admin token or lease manage rights required).',
  404: 'No such resource visible to the caller.',
  409: 'The resource is in a state that does not allow this (conflict).',
  413: 'The request body (or the run history) is larger than the broker accepts.',
  426: 'Not a WebSocket upgrade request.',
  429: 'A limit was reached (spend caps, active leases, pending logins).',
}

export const openApiPath = (path: string): string => path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}')

export function operationId(route: Pick<RouteDoc, 'method' | 'path'>): string {
  const words = route.path
    .split('/')
    .filter((part) => part && part !== 'v1')
    .flatMap((part) => (part.startsWith(':') ? ['by', part.slice(1)] : part.split(/[^A-Za-z0-9]+/)))
    .filter(Boolean)
  return [route.method.toLowerCase(), ...words.map((word) => word[0]!.toUpperCase() + word.slice(1))].join('')
}

/** Every schema of `routes` converted in one pass: the wire components plus the routes' own inline schemas. */
class SchemaConverter {
  private readonly names = new Map<v.GenericSchema, string>()
  private readonly inlined = new Set<string>()
  readonly components: Record<string, JsonSchema>

  constructor(routes: readonly RouteDoc[]) {
    const definitions = wireDefinitions()
    for (const [name, schema] of Object.entries(definitions)) this.names.set(schema, name)
    // Schemas that are no wire export convert under a placeholder name and are inlined
    // where the routes use them; one still referenced from elsewhere stays a component.
    const inline = (schema: v.GenericSchema | undefined) => {
      if (!schema || this.names.has(schema)) return
      const name = `Inline${this.inlined.size + 1}`
      this.names.set(schema, name)
      this.inlined.add(name)
      definitions[name] = schema
    }
    for (const route of routes) {
      for (const schema of Object.values(route.params ?? {})) inline(schema)
      for (const schema of [route.query, route.body, route.response]) inline(schema)
    }
    this.components = toJsonSchemaDefs(definitions, {
      target: 'draft-2020-12',
      typeMode: 'input',
      // Transforms, custom checks and the like have no JSON Schema form: describe the rest, never throw.
      errorMode: 'ignore',
      overrideRef: ({ referenceId }) => `#/components/schemas/${referenceId}`,
    })
  }

  convert(schema: v.GenericSchema): Json {
    const name = this.names.get(schema)!
    return this.inlined.has(name) ? (this.components[name] as Json) : { $ref: `#/components/schemas/${name}` }
  }

  /** The schema itself, following a component reference. */
  resolve(json: Json): Json {
    const ref = typeof json.$ref === 'string' ? json.$ref.replace('#/components/schemas/', '') : undefined
    return ref && this.components[ref] ? (this.components[ref] as Json) : json
  }

  /** Components reachable from `roots`, in the order of the definitions. */
  used(roots: unknown): Record<string, JsonSchema> {
    const names = new Set<string>()
    const visit = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(visit)
      if (typeof node !== 'object' || node === null) return
      for (const [key, value] of Object.entries(node)) {
        if (key === '$ref' && typeof value === 'string' && value.startsWith('#/components/schemas/')) {
          const name = value.slice('#/components/schemas/'.length)
          if (!names.has(name) && this.components[name]) {
            names.add(name)
            visit(this.components[name])
          }
        } else visit(value)
      }
    }
    visit(roots)
    return Object.fromEntries(Object.entries(this.components).filter(([name]) => names.has(name)))
  }
}

const errorResponse = (status: number) => ({
  description: ERROR_TEXT[status] ?? 'Error.',
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
})

function errorStatuses(route: RouteDoc): number[] {
  const statuses = new Set<number>(EXTRA_ERRORS[`${route.method} ${route.path}`] ?? [])
  if (route.params || route.query || (route.body && !route.websocket)) statuses.add(400)
  if (route.auth !== 'none') statuses.add(401)
  if (route.auth === 'admin') statuses.add(403)
  if (route.params) statuses.add(404)
  if (route.body && !route.websocket) statuses.add(413)
  if (route.websocket) statuses.add(426)
  return [...statuses].sort((a, b) => a - b)
}

function successResponse(route: RouteDoc, schemas: SchemaConverter): Json {
  if (!route.response) return { description: 'Success.', content: { 'application/json': { schema: { type: 'object' } } } }
  const schema = schemas.convert(route.response)
  const plain = schemas.resolve(schema)
  if (plain.type === 'string') {
    const mediaType = typeof plain.contentMediaType === 'string' ? plain.contentMediaType : 'text/plain'
    return { description: 'Success.', content: { [mediaType]: { schema } } }
  }
  return { description: 'Success.', content: { 'application/json': { schema } } }
}

function operation(route: RouteDoc, schemas: SchemaConverter): Json {
  const parameters: Json[] = []
  for (const [name, schema] of Object.entries(route.params ?? {})) {
    parameters.push({ name, in: 'path', required: true, schema: schemas.convert(schema) })
  }
  if (route.query) {
    // One parameter per property of the query object.
    const query = schemas.resolve(schemas.convert(route.query))
    const required = new Set(Array.isArray(query.required) ? (query.required as string[]) : [])
    for (const [name, schema] of Object.entries((query.properties ?? {}) as Record<string, Json>)) {
      const { description, ...rest } = schema
      parameters.push({ name, in: 'query', required: required.has(name), ...(description ? { description } : {}), schema: rest })
    }
  }

  const responses: Json = {}
  if (route.websocket) {
    responses['101'] = { description: 'Switching Protocols: the connection is now a WebSocket carrying JSON text frames.' }
  } else {
    // Creates answer 201, the rest 200: a POST documents the whole 2xx range.
    responses[route.method === 'POST' ? '2XX' : '200'] = successResponse(route, schemas)
  }
  for (const status of errorStatuses(route)) responses[String(status)] = errorResponse(status)

  const admin = route.auth === 'admin' ? 'Requires an admin token.' : undefined
  const websocket = route.websocket ? 'Upgrade to a WebSocket (`Upgrade: websocket`); anything else is answered 426.' : undefined
  const description = [admin, websocket].filter(Boolean).join(' ')
  return {
    operationId: operationId(route),
    summary: route.summary,
    ...(description ? { description } : {}),
    tags: [routeTag(route)],
    security: route.auth === 'none' ? [] : [{ bearer: [] }],
    ...(parameters.length ? { parameters } : {}),
    ...(route.body && !route.websocket
      ? {
          requestBody: {
            required: true,
            content: { [route.bodyMediaType ?? 'application/json']: { schema: schemas.convert(route.body) } },
          },
        }
      : {}),
    ...(route.websocket && route.body ? { 'x-client-messages': schemas.convert(route.body) } : {}),
    ...(route.websocket && route.response ? { 'x-server-messages': schemas.convert(route.response) } : {}),
    responses,
  }
}

/** The OpenAPI 3.1.0 document for `routes`. */
export function openApiDocument(routes: readonly RouteDoc[], info: OpenApiInfo): object {
  const schemas = new SchemaConverter(routes)
  const paths: Record<string, Json> = {}
  for (const route of routes) {
    const path = (paths[openApiPath(route.path)] ??= {})
    path[route.method.toLowerCase()] = operation(route, schemas)
  }
  // Error is always listed: every error response points at it.
  const components = schemas.used([paths, { $ref: '#/components/schemas/Error' }])
  return {
    openapi: '3.1.0',
    info: {
      title: 'Crabbox broker API',
      version: info.version,
      description:
        'Leases remote test machines, records runs and streams their events. Every error body is `{error, message}` with a stable `error` code.',
    },
    ...(info.serverUrl ? { servers: [{ url: info.serverUrl }] } : {}),
    tags: API_TAGS.map((tag) => ({ ...tag })),
    paths,
    components: {
      schemas: components,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'A user token from `crabbox login` or a shared/admin token from the broker configuration.',
        },
      },
    },
  }
}

const served = new WeakMap<readonly RouteDoc[], Map<string, string>>()

/** `GET /v1/openapi.json`: the document as a JSON response, ready to mount (built once per route table and info). */
export function openApiResponse(routes: readonly RouteDoc[], info: OpenApiInfo): Response {
  const byInfo = served.get(routes) ?? new Map<string, string>()
  served.set(routes, byInfo)
  const key = JSON.stringify([info.version, info.serverUrl ?? ''])
  let text = byInfo.get(key)
  if (text === undefined) byInfo.set(key, (text = JSON.stringify(openApiDocument(routes, info))))
  return new Response(text, {
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'public, max-age=300' },
  })
}
