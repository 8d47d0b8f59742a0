import { readFileSync } from 'node:fs'
import * as v from 'valibot'
import type { Document, LineCounter, Node } from 'yaml'
import { CrabboxError } from '../errors.js'
import { FileConfig } from './schema.js'

type PathKey = string | number
type Issue = v.BaseIssue<unknown>

const issuePath = (issue: Issue): PathKey[] => (issue.path ?? []).map((item) => item.key as PathKey)
const isUnknownKey = (issue: Issue) => issue.type === 'strict_object' && issue.expected === 'never'

/** `Invalid type: Expected …` stays as valibot says it; our own messages name what is expected. */
export function describeIssue(issue: Issue): string {
  if (/^Invalid /.test(issue.message)) return issue.message
  return `expected ${issue.message}, got ${issue.received}`
}

export const dotted = (path: PathKey[]) => path.join('.')

type SchemaNode = { type: string; wrapped?: SchemaNode; entries?: Record<string, SchemaNode> }

/** Every dotted key a config file may hold (`ssh.key`, `sync.exclude`, …), from the schema. */
export function configFileKeys(schema: SchemaNode = FileConfig as unknown as SchemaNode, prefix = ''): string[] {
  const unwrapped = schema.type === 'optional' && schema.wrapped ? schema.wrapped : schema
  if (unwrapped.type !== 'strict_object' || !unwrapped.entries) return [prefix]
  return Object.entries(unwrapped.entries).flatMap(([key, child]) => configFileKeys(child, prefix ? `${prefix}.${key}` : key))
}

/**
 * Validates one layer (file, env or flags) against the file schema. Unknown keys
 * are dropped and reported through `onUnknown`; anything else invalid is
 * reported through `onInvalid`, which must throw.
 */
export function validateLayer(
  data: Record<string, unknown>,
  onUnknown: (path: PathKey[]) => void,
  onInvalid: (path: PathKey[], issue: Issue) => never,
): FileConfig {
  let result = v.safeParse(FileConfig, data)
  if (result.success) return result.output
  const unknown = result.issues.filter(isUnknownKey)
  for (const issue of unknown) {
    const path = issuePath(issue)
    onUnknown(path)
    deleteIn(data, path)
  }
  if (unknown.length > 0) result = v.safeParse(FileConfig, data)
  if (result.success) return result.output
  const issue = result.issues[0]
  return onInvalid(issuePath(issue), issue)
}

function deleteIn(data: Record<string, unknown>, path: PathKey[]): void {
  let node: unknown = data
  for (const key of path.slice(0, -1)) node = (node as Record<PathKey, unknown> | undefined)?.[key]
  if (node && typeof node === 'object') delete (node as Record<PathKey, unknown>)[path[path.length - 1]]
}

/** The 1-based line of the value (or, for an unknown key, the key) at `path`. */
function lineAt(yaml: Yaml, doc: Document, counter: LineCounter, path: PathKey[], wantKey: boolean): number | undefined {
  const { isMap, isPair, isScalar } = yaml
  let node: unknown = doc.contents
  let keyNode: Node | undefined
  for (const key of path) {
    if (!isMap(node) && !(node && typeof node === 'object' && 'items' in node)) break
    const items = (node as { items: unknown[] }).items
    const found = isMap(node)
      ? items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === String(key))
      : items[Number(key)]
    if (found === undefined) break
    if (isPair(found)) {
      keyNode = found.key as Node
      node = found.value
    } else {
      keyNode = undefined
      node = found
    }
  }
  const target = (wantKey ? keyNode : (node as Node | undefined)) ?? keyNode
  const offset = target?.range?.[0]
  return offset === undefined ? undefined : counter.linePos(offset).line
}

type Yaml = typeof import('yaml')

export interface ReadConfigFile {
  path: string
  config: FileConfig
}

/**
 * Reads and validates one YAML config file; `undefined` when it does not exist.
 * Bad YAML or a bad value is a usage error (exit 2) naming the file and line.
 */
export async function readConfigFile(path: string, warn: (message: string) => void): Promise<ReadConfigFile | undefined> {
  let text: string
  try {
    // Read at once: a config file is small, and fs/promises' readFile makes one trip through the
    // thread pool for each of its open, stat, read and close, which every command waited for.
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new CrabboxError(`cannot read config file ${path}: ${(error as Error).message}`, {
      exit: 'usage',
      hint: 'Check the file permissions, or point CRABBOX_CONFIG at another file.',
    })
  }
  // Loaded only when there is a file to parse: most commands start with none.
  const yaml: Yaml = await import('yaml')
  const counter = new yaml.LineCounter()
  const doc = yaml.parseDocument(text, { lineCounter: counter, prettyErrors: false })
  const fix = `Fix ${path} (see docs/config.md for every key).`
  if (doc.errors.length > 0) {
    const error = doc.errors[0]
    const line = error.linePos?.[0]?.line ?? counter.linePos(error.pos[0]).line
    const message = error.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
    throw new CrabboxError(`invalid YAML in ${path} line ${line}: ${message}`, { exit: 'usage', hint: fix })
  }
  const data = doc.toJS() ?? {}
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new CrabboxError(`invalid config in ${path} line 1: expected a mapping of keys to values`, { exit: 'usage', hint: fix })
  }
  const config = validateLayer(
    data as Record<string, unknown>,
    (key) => {
      const line = lineAt(yaml, doc, counter, key, true)
      warn(`unknown config key ${dotted(key)} in ${path}${line ? ` line ${line}` : ''} (ignored)`)
    },
    (key, issue) => {
      const line = lineAt(yaml, doc, counter, key, false)
      throw new CrabboxError(`invalid config in ${path}${line ? ` line ${line}` : ''}: ${dotted(key)}: ${describeIssue(issue)}`, {
        exit: 'usage',
        hint: fix,
      })
    },
  )
  return { path, config }
}
