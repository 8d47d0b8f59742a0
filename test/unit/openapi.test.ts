import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Validator } from '@seriousme/openapi-schema-validator'
import { Ajv2020 } from 'ajv/dist/2020.js'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { GithubLoginPollResponse } from '../../src/protocol/auth.js'
import { ControlClientMessage } from '../../src/protocol/control.js'
import { ErrorBody } from '../../src/protocol/errors.js'
import { LeaseListQuery, LeaseRecord, LeaseRequest, SharePutRequest } from '../../src/protocol/leases.js'
import { UsageQuery } from '../../src/protocol/usage.js'
import { EXTRA_ERRORS, openApiDocument, openApiPath, openApiResponse } from '../../worker/openapi.js'
import { API_ROUTES } from '../../worker/fleet/routes.js'

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

type Json = Record<string, any>
const document = openApiDocument(API_ROUTES, { version: '0.1.0', serverUrl: 'https://broker.example.test' }) as Json
const operations = Object.entries(document.paths as Json).flatMap(([path, item]) =>
  Object.entries(item as Json).map(([method, operation]) => ({ path, method, operation: operation as Json })),
)

function walk(node: unknown, visit: (key: string, value: unknown) => void): void {
  if (Array.isArray(node)) return node.forEach((item) => walk(item, visit))
  if (typeof node !== 'object' || node === null) return
  for (const [key, value] of Object.entries(node)) {
    visit(key, value)
    walk(value, visit)
  }
}

describe('openApiDocument', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator()
    const result = await validator.validate(structuredClone(document))
    expect(result.errors).toBeUndefined()
    expect(result.valid).toBe(true)
    expect(validator.version).toBe('3.1')
    // Every $ref resolves.
    expect(() => validator.resolveRefs()).not.toThrow()
    expect(document.openapi).toBe('3.1.0')
    expect(document.servers).toEqual([{ url: 'https://broker.example.test' }])
  })

  it('has every component schema valid JSON Schema 2020-12, with no leftover converter wrapping', () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: false })
    for (const [name, schema] of Object.entries(document.components.schemas as Json)) {
      expect(ajv.validateSchema(schema), `${name}: ${ajv.errorsText()}`).toBe(true)
    }
    // Route-local schemas are inlined, never published under placeholder names.
    expect(Object.keys(document.components.schemas).filter((name) => name.startsWith('Inline'))).toEqual([])
    walk(document, (key) => {
      expect(key).not.toBe('$defs')
      expect(key).not.toBe('$schema')
    })
  })

  it('covers every route once, with unique operation IDs', () => {
    const documented = operations.map(({ method, path }) => `${method.toUpperCase()} ${path}`).sort()
    const routes = API_ROUTES.map((route) => `${route.method} ${openApiPath(route.path)}`).sort()
    expect(documented).toEqual(routes)
    expect(new Set(routes).size).toBe(routes.length)
    const ids = operations.map(({ operation }) => operation.operationId)
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids).toContain('postLeasesByIdHeartbeat')
    // The extra error table names only routes that exist.
    for (const key of Object.keys(EXTRA_ERRORS)) expect(API_ROUTES.map((route) => `${route.method} ${route.path}`)).toContain(key)
  })

  it('documents parameters, bodies, responses and security from the route entries', () => {
    for (const route of API_ROUTES) {
      const operation = document.paths[openApiPath(route.path)][route.method.toLowerCase()] as Json
      const where = `${route.method} ${route.path}`
      expect(operation.summary, where).toBe(route.summary)
      expect(operation.security, where).toEqual(route.auth === 'none' ? [] : [{ bearer: [] }])
      if (route.auth === 'admin') {
        expect(operation.description, where).toContain('admin token')
        expect(operation.responses['403'], where).toBeDefined()
      }
      if (route.auth !== 'none') expect(operation.responses['401'], where).toBeDefined()
      const parameters = (operation.parameters ?? []) as Json[]
      for (const name of Object.keys(route.params ?? {})) {
        expect(route.path, where).toContain(`:${name}`)
        expect(
          parameters.find((p) => p.in === 'path' && p.name === name),
          `${where} path ${name}`,
        ).toMatchObject({ required: true })
      }
      const queryNames = route.query && 'entries' in route.query ? Object.keys(route.query.entries as object) : []
      expect(
        parameters.filter((p) => p.in === 'query').map((p) => p.name),
        where,
      ).toEqual(queryNames)
      if (route.websocket) {
        expect(route.method, where).toBe('GET')
        expect(operation.responses['101'], where).toBeDefined()
        expect(operation.requestBody, where).toBeUndefined()
      } else {
        expect(Boolean(operation.requestBody), where).toBe(Boolean(route.body))
        const success = operation.responses['200'] ?? operation.responses['2XX']
        expect(success?.content, where).toBeDefined()
      }
      if (route.body && !route.websocket) expect(operation.responses['413'], where).toBeDefined()
      for (const [status, response] of Object.entries(operation.responses as Json)) {
        if (/^[45]/.test(status))
          expect(response.content['application/json'].schema, `${where} ${status}`).toEqual({ $ref: '#/components/schemas/Error' })
      }
    }
  })

  it('shares one Error component for error bodies', () => {
    expect(document.components.schemas.Error).toMatchObject({
      type: 'object',
      properties: { error: { type: 'string' }, message: { type: 'string' } },
      required: ['error'],
    })
    expect(document.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
  })

  it('names bodies after their src/protocol schemas and sends text responses as text', () => {
    const leases = document.paths['/v1/leases'] as Json
    expect(leases.post.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/LeaseRequest' })
    expect(leases.post.responses['2XX'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/LeaseResponse' })
    expect(leases.get.parameters.find((p: Json) => p.name === 'limit')).toMatchObject({
      in: 'query',
      required: false,
      schema: { type: 'string' },
    })
    expect(document.paths['/v1/runs/{id}/logs'].get.responses['200'].content).toEqual({ 'text/plain': { schema: { type: 'string' } } })
    expect(Object.keys(document.paths['/v1/auth/github/callback'].get.responses['200'].content)).toEqual(['text/html'])
    expect(document.paths['/v1/control'].get['x-client-messages']).toEqual({ $ref: '#/components/schemas/ControlClientMessage' })
  })

  it('accepts and rejects what the valibot schemas accept and reject', () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: false })
    const base = 'https://crabbox.invalid/openapi.json'
    // Query schemas are spread into parameters: put them back together as one object.
    const queryOf = (path: string): Json => {
      const parameters = (document.paths[path].get.parameters as Json[]).filter((p) => p.in === 'query')
      const absolute = (schema: Json) => JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', `"${base}#/components/`))
      return {
        type: 'object',
        properties: Object.fromEntries(parameters.map((p) => [p.name, absolute(p.schema)])),
        required: parameters.filter((p) => p.required).map((p) => p.name),
      }
    }
    const QUERIES: Record<string, string> = { LeaseListQuery: '/v1/leases', UsageQuery: '/v1/usage' }
    ajv.addSchema({ $id: base, components: document.components })
    const check = (name: string, schema: v.GenericSchema, value: unknown) => {
      const validate = ajv.compile(QUERIES[name] ? queryOf(QUERIES[name]) : { $ref: `${base}#/components/schemas/${name}` })
      expect(validate(value), `${name} ${JSON.stringify(value)} by JSON Schema`).toBe(v.is(schema, value))
    }
    const samples: [string, v.GenericSchema, unknown[]][] = [
      [
        'LeaseRequest',
        LeaseRequest,
        [
          { sshPublicKey: 'ssh-ed25519 AAAA' },
          {},
          { sshPublicKey: 'k', awsRootGB: 0 },
          { sshPublicKey: 'k', location: 'FSN1' },
          { sshPublicKey: 'k', keep: 'yes' },
        ],
      ],
      ['LeaseListQuery', LeaseListQuery, [{}, { state: 'active', limit: '10' }, { state: 'gone' }, { limit: 'ten' }]],
      ['SharePutRequest', SharePutRequest, [{ org: 'use' }, { org: 'own' }, { users: { alice: 'manage' } }, { users: { alice: 'admin' } }]],
      ['UsageQuery', UsageQuery, [{ month: '2026-05', scope: 'org' }, { month: '2026-13' }, { scope: 'everyone' }]],
      ['Error', ErrorBody, [{ error: 'not_found' }, { error: 'x', message: 'y' }, { message: 'no code' }]],
      [
        'GithubLoginPollResponse',
        GithubLoginPollResponse,
        [{ status: 'pending' }, { status: 'complete' }, { status: 'complete', token: 't', owner: 'o', org: 'g', login: 'l' }],
      ],
      [
        'ControlClientMessage',
        ControlClientMessage,
        [{ type: 'ping' }, { type: 'nope' }, { type: 'ack', runID: 'run_1', seq: 3 }, { type: 'ack', runID: 'run_1' }],
      ],
      [
        'LeaseRecord',
        LeaseRecord,
        [
          {
            id: 'cbx_0123456789ab',
            slug: 's',
            provider: 'static',
            target: 'linux',
            owner: 'o',
            org: 'g',
            keep: false,
            ttlSeconds: 60,
            idleTimeoutSeconds: 60,
            state: 'active',
            createdAt: 't',
            updatedAt: 't',
            lastTouchedAt: 't',
            expiresAt: 't',
            future: 1,
          },
          { id: 'cbx_0123456789ab' },
        ],
      ],
    ]
    for (const [name, schema, values] of samples) for (const value of values) check(name, schema, value)
  })

  it('is served by openApiResponse as JSON', async () => {
    const response = openApiResponse(API_ROUTES, { version: '0.1.0' })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8')
    const body = (await response.json()) as Json
    expect(body.openapi).toBe('3.1.0')
    expect(Object.keys(body.paths)).toEqual(Object.keys(document.paths))
  })
})

describe('docs/api.md', () => {
  it('matches the generator output (run `npm run docs:api` when this fails)', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'scripts', 'gen-api-docs.js'), '--stdout'],
      {
        cwd: repoRoot,
        maxBuffer: 16 * 1024 * 1024,
      },
    )
    const committed = readFileSync(join(repoRoot, 'docs', 'api.md'), 'utf8')
    if (stdout !== committed) {
      const wanted = stdout.split('\n')
      const have = committed.split('\n')
      const line = wanted.findIndex((text, index) => text !== have[index])
      expect.fail(
        'docs/api.md is out of date: run `npm run docs:api` and commit docs/api.md.\n' +
          `first difference at line ${line + 1}:\n  generated: ${wanted[line]}\n  committed: ${have[line]}`,
      )
    }
    for (const route of API_ROUTES) expect(stdout).toContain(`### \`${route.method} ${openApiPath(route.path)}\``)
  })
})
