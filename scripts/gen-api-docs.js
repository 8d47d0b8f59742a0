#!/usr/bin/env node
// Writes docs/api.md from the broker's OpenAPI document (worker/openapi.ts), which is built
// from the route table and the valibot schemas in src/protocol. Run with `npm run docs:api`
// (tsx: the route table and schemas are TypeScript). `--stdout` prints instead of writing.
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { API_TAGS, API_VERSION, openApiDocument } from '../worker/openapi.ts'
import { API_ROUTES } from '../worker/fleet/routes.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const REF = '#/components/schemas/'

/** The document docs/api.md is rendered from. */
export function apiDocument() {
  return openApiDocument(API_ROUTES, { version: API_VERSION })
}

const anchor = (heading) =>
  heading
    .toLowerCase()
    .replace(/[^a-z0-9 _-]/g, '')
    .replaceAll(' ', '-')
const cell = (text) =>
  String(text ?? '')
    .replaceAll('|', '\\|')
    .replaceAll('\n', ' ')
const code = (text) => `\`${text}\``
const refName = (schema) => (typeof schema?.$ref === 'string' && schema.$ref.startsWith(REF) ? schema.$ref.slice(REF.length) : undefined)

const AUTH = {
  none: 'none',
  user: 'bearer token',
  admin: 'bearer token with admin rights',
}

function authOf(operation) {
  if (!operation.security?.length) return AUTH.none
  return operation.description?.includes('admin token') ? AUTH.admin : AUTH.user
}

/** A schema as one short type expression (component names link to their section). */
function typeOf(schema, components) {
  if (!schema || typeof schema !== 'object') return 'any'
  const name = refName(schema)
  if (name) {
    const target = components[name] ?? {}
    // Small scalar components read better inline than as a link.
    if (target.type && target.type !== 'object' && !target.anyOf && !target.oneOf && !target.enum) return typeOf(target, components)
    return `[${name}](#${anchor(name)})`
  }
  if (schema.const !== undefined) return code(JSON.stringify(schema.const))
  if (schema.enum) return schema.enum.map((value) => code(JSON.stringify(value))).join(' | ')
  const options = schema.anyOf ?? schema.oneOf
  if (options) return options.map((option) => typeOf(option, components)).join(' | ')
  if (schema.allOf) return schema.allOf.map((option) => typeOf(option, components)).join(' & ')
  if (Array.isArray(schema.type)) return schema.type.join(' | ')
  if (schema.type === 'array') return `array of ${typeOf(schema.items, components)}`
  if (schema.type === 'object') {
    const hasFields = schema.properties && Object.keys(schema.properties).length > 0
    if (!hasFields && schema.additionalProperties && typeof schema.additionalProperties === 'object')
      return `map of ${typeOf(schema.additionalProperties, components)}`
    return 'object'
  }
  return schema.type ?? 'any'
}

/** Constraints JSON Schema carries that a reader needs: bounds, patterns, defaults. */
function notesOf(schema, components) {
  const target = refName(schema) ? (components[refName(schema)] ?? {}) : schema
  const plain = target.anyOf?.find((option) => option.type !== 'null') ?? target
  const notes = []
  if (target.description ?? schema.description) notes.push(target.description ?? schema.description)
  if (plain.minLength !== undefined) notes.push(`min length ${plain.minLength}`)
  if (plain.maxLength !== undefined) notes.push(`max length ${plain.maxLength}`)
  if (plain.minItems !== undefined) notes.push(`min ${plain.minItems} items`)
  if (plain.maxItems !== undefined) notes.push(`max ${plain.maxItems} items`)
  if (plain.minimum !== undefined) notes.push(`≥ ${plain.minimum}`)
  if (plain.maximum !== undefined) notes.push(`≤ ${plain.maximum}`)
  if (plain.type === 'integer') notes.push('integer')
  if (plain.pattern) notes.push(`pattern ${code(plain.pattern)}`)
  if (plain.format) notes.push(`format ${plain.format}`)
  const fallback = schema.default ?? target.default
  if (fallback !== undefined && !(fallback === '' && plain.type === 'string')) notes.push(`default ${code(JSON.stringify(fallback))}`)
  return notes.join('; ')
}

/** Rows for the fields of an object schema; inline nested objects expand as `a.b`. */
function fieldRows(schema, components, prefix = '') {
  const rows = []
  const required = new Set(schema.required ?? [])
  for (const [name, field] of Object.entries(schema.properties ?? {})) {
    rows.push(
      `| ${code(prefix + name)} | ${cell(typeOf(field, components))} | ${required.has(name) ? 'yes' : 'no'} | ${cell(notesOf(field, components))} |`,
    )
    const nested =
      field.anyOf?.find((option) => option.type === 'object' && option.properties) ??
      (field.type === 'object' && field.properties ? field : undefined)
    const items = field.type === 'array' && field.items?.type === 'object' && field.items.properties ? field.items : undefined
    if (nested) rows.push(...fieldRows(nested, components, `${prefix}${name}.`))
    if (items) rows.push(...fieldRows(items, components, `${prefix}${name}[].`))
  }
  return rows
}

const FIELD_HEAD = ['| Field | Type | Required | Notes |', '| --- | --- | --- | --- |']

const hasFields = (schema) => schema?.type === 'object' && schema.properties && Object.keys(schema.properties).length > 0

/** Field tables for an object schema, or for each object variant of a union (named by its constant field). */
function fieldTables(schema, components) {
  const extra = (object) => (object.additionalProperties && object.additionalProperties !== false ? ['Unknown fields are kept.', ''] : [])
  if (hasFields(schema)) return [...extra(schema), ...FIELD_HEAD, ...fieldRows(schema, components), '']
  const variants = schema.anyOf ?? schema.oneOf
  if (!variants?.length || !variants.every(hasFields)) return undefined
  const out = ['One of:', '']
  variants.forEach((variant, index) => {
    const tag = Object.entries(variant.properties).find(([, field]) => field.const !== undefined)
    out.push(
      tag ? `When ${code(tag[0])} is ${code(JSON.stringify(tag[1].const))}:` : `Variant ${index + 1}:`,
      '',
      ...extra(variant),
      ...FIELD_HEAD,
      ...fieldRows(variant, components),
      '',
    )
  })
  return out
}

/** A body schema: its component name, then its fields (or its type when it is not an object). */
function bodyLines(title, schema, components) {
  const name = refName(schema)
  const target = name ? components[name] : schema
  const label = name ? `${title} ([${name}](#${anchor(name)}))` : title
  const tables = target ? fieldTables(target, components) : undefined
  if (tables) return [`${label}:`, '', ...tables]
  return [`${label}: ${typeOf(target === schema ? schema : { $ref: schema.$ref }, components)}`, '']
}

function operationLines(method, path, operation, components) {
  const out = [`### ${code(`${method.toUpperCase()} ${path}`)}`, '', operation.summary, '', `Auth: ${authOf(operation)}.`, '']
  // The auth line already says when admin rights are needed.
  const description = operation.description?.replace('Requires an admin token.', '').trim()
  if (description) out.push(description, '')
  const params = operation.parameters ?? []
  const pathParams = params.filter((param) => param.in === 'path')
  const queryParams = params.filter((param) => param.in === 'query')
  if (pathParams.length) {
    out.push('Path parameters:', '', '| Name | Type | Notes |', '| --- | --- | --- |')
    for (const param of pathParams)
      out.push(`| ${code(param.name)} | ${cell(typeOf(param.schema, components))} | ${cell(notesOf(param.schema, components))} |`)
    out.push('')
  }
  if (queryParams.length) {
    out.push('Query parameters:', '', '| Name | Type | Required | Notes |', '| --- | --- | --- | --- |')
    for (const param of queryParams) {
      const notes = [param.description, notesOf(param.schema, components)].filter(Boolean).join('; ')
      out.push(`| ${code(param.name)} | ${cell(typeOf(param.schema, components))} | ${param.required ? 'yes' : 'no'} | ${cell(notes)} |`)
    }
    out.push('')
  }
  const [bodyType, bodyContent] = Object.entries(operation.requestBody?.content ?? {})[0] ?? []
  if (bodyContent?.schema) {
    const title = bodyType === 'application/json' ? 'Request body (JSON)' : `Request body (${bodyType})`
    out.push(...bodyLines(title, bodyContent.schema, components))
  }
  if (operation['x-client-messages']) out.push(`Client messages: ${typeOf(operation['x-client-messages'], components)}`, '')
  if (operation['x-server-messages']) out.push(`Server messages: ${typeOf(operation['x-server-messages'], components)}`, '')

  const statuses = Object.keys(operation.responses).sort()
  for (const status of statuses.filter((s) => !s.startsWith('4') && !s.startsWith('5'))) {
    const response = operation.responses[status]
    const [mediaType, content] = Object.entries(response.content ?? {})[0] ?? []
    if (!content) {
      out.push(`Response ${status}: ${response.description}`, '')
      continue
    }
    if (mediaType === 'application/json') out.push(...bodyLines(`Response ${status} (JSON)`, content.schema, components))
    else out.push(`Response ${status}: ${mediaType}.`, '')
  }
  const errors = statuses.filter((s) => s.startsWith('4') || s.startsWith('5'))
  if (errors.length) {
    out.push('Errors:', '')
    for (const status of errors) out.push(`- ${status}: ${operation.responses[status].description}`)
    out.push('')
  }
  return out
}

function schemaLines(name, schema, components) {
  const out = [`### ${name}`, '']
  if (schema.description) out.push(schema.description, '')
  const tables = fieldTables(schema, components)
  if (tables) out.push(...tables)
  else {
    const notes = notesOf(schema, components)
    out.push(`${typeOf(schema, components)}${notes ? ` (${notes})` : ''}`, '')
  }
  return out
}

/** docs/api.md for an OpenAPI document made by `openApiDocument`. */
export function renderApiDocs(document) {
  const components = document.components?.schemas ?? {}
  const operations = []
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) operations.push({ path, method, operation })
  }
  const tags = API_TAGS.filter((tag) => operations.some(({ operation }) => operation.tags?.[0] === tag.name))
  const out = [
    '# Broker HTTP API',
    '',
    '<!-- Generated by `npm run docs:api` from the broker route table and the valibot schemas in src/protocol. Do not edit by hand. -->',
    '',
    `${document.info.description}`,
    '',
    'Requests and responses are JSON unless noted. Authenticated routes take `Authorization: Bearer <token>`.',
    'Errors are the [Error](#error) object.',
    'The same description is served as OpenAPI 3.1 at `GET /v1/openapi.json`.',
    '',
    '| Route | Summary | Auth |',
    '| --- | --- | --- |',
  ]
  for (const tag of tags) {
    for (const { path, method, operation } of operations.filter(({ operation }) => operation.tags?.[0] === tag.name)) {
      out.push(`| ${code(`${method.toUpperCase()} ${path}`)} | ${cell(operation.summary)} | ${authOf(operation)} |`)
    }
  }
  out.push('')
  for (const tag of tags) {
    out.push(`## ${tag.name[0].toUpperCase()}${tag.name.slice(1)}`, '', tag.description, '')
    for (const { path, method, operation } of operations.filter(({ operation }) => operation.tags?.[0] === tag.name)) {
      out.push(...operationLines(method, path, operation, components))
    }
  }
  out.push(
    '## Schemas',
    '',
    'Shapes referenced above, named as in src/protocol (input side: before the broker trims, bounds or defaults them).',
    '',
  )
  for (const [name, schema] of Object.entries(components).sort(([a], [b]) => a.localeCompare(b)))
    out.push(...schemaLines(name, schema, components))
  return `${out.join('\n').trimEnd()}\n`
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = renderApiDocs(apiDocument())
  if (process.argv.includes('--stdout')) process.stdout.write(text)
  else writeFileSync(join(root, 'docs', 'api.md'), text)
}
