import { join } from 'node:path'
import * as v from 'valibot'
import { parse as parseYaml } from 'yaml'
import type { ServiceContext } from './context.js'
import { userConfigPath } from '../paths.js'
import { configFileKeys, describeIssue } from '../config/file.js'
import { FileConfig, type Config } from '../config/schema.js'
import { readConfigValue, setUserConfigValues } from '../config/write.js'
import { usageError } from '../errors.js'
import { closest } from '../ui/suggest.js'
import { accessAuth, type AccessAuth } from '../transport/broker/client.js'

type Secret = 'set' | 'missing'
const secret = (value: string | undefined): Secret => (value ? 'set' : 'missing')

/** The merged config with secrets replaced by `set`/`missing`: safe to paste into an issue. */
export type RedactedConfig = Omit<Config, 'sources' | 'broker'> & {
  broker: Omit<Config['broker'], 'token' | 'adminToken' | 'access'> & {
    token: Secret
    adminToken: Secret
    /** Present when any Cloudflare Access credential is configured. */
    access?: { clientId: Secret; clientSecret: Secret; token: Secret }
  }
}

export interface ConfigView {
  config: RedactedConfig
  /** Dotted key → where its value came from (a file path, `env NAME`, `flag --name`); absent keys are defaults. */
  sources: Record<string, string>
  /** Config files read, lowest precedence first. */
  files: string[]
  userConfig: string
  repoRoot?: string
  /** Which Cloudflare Access credentials are sent: missing, service-token, token, service-token+token, incomplete. */
  accessAuth: AccessAuth
}

export function showConfig(context: ServiceContext): ConfigView {
  const { sources, broker, ...rest } = context.config
  const { access, ...plain } = broker
  const anyAccess = Boolean(access?.clientId || access?.clientSecret || access?.token)
  return {
    config: {
      ...rest,
      broker: {
        ...plain,
        token: secret(broker.token),
        adminToken: secret(broker.adminToken),
        ...(anyAccess
          ? { access: { clientId: secret(access?.clientId), clientSecret: secret(access?.clientSecret), token: secret(access?.token) } }
          : {}),
      },
    },
    accessAuth: accessAuth(access),
    sources,
    files: context.configFiles ?? [],
    userConfig: userConfigPath(),
    repoRoot: context.repoRoot,
  }
}

export interface SetBrokerOptions {
  url: string
  token?: string
  adminToken?: string
  provider?: string
}

export interface SetBrokerResult {
  config: string
  broker: string
  provider?: string
  token: Secret
  adminToken: Secret
}

/** Writes the broker URL (and tokens/provider when given) to the user config, without contacting the broker. */
export async function setBroker(options: SetBrokerOptions): Promise<SetBrokerResult> {
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    throw usageError(`--url ${JSON.stringify(options.url)} is not a URL`, 'Give the broker address, e.g. --url https://crabbox.example.com')
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw usageError(`--url must be http(s), got ${url.protocol}`, 'Give the broker address, e.g. --url https://crabbox.example.com')
  }
  const broker = url.href.replace(/\/+$/, '')
  const values: Record<string, string | undefined> = { 'broker.url': broker }
  if (options.token !== undefined) values['broker.token'] = options.token
  if (options.adminToken !== undefined) values['broker.adminToken'] = options.adminToken
  if (options.provider !== undefined) Object.assign(values, { 'broker.provider': options.provider, provider: options.provider })
  const path = await setUserConfigValues(values)
  return { config: path, broker, provider: options.provider, token: secret(options.token), adminToken: secret(options.adminToken) }
}

/**
 * Reads secrets from stdin, one per line, trimmed: one per name. A missing
 * line is a usage error naming what was expected.
 */
export async function readStdinSecrets(names: string[], stdin: NodeJS.ReadableStream = process.stdin): Promise<string[]> {
  if (names.length === 0) return []
  let text = ''
  // Stop at the last line needed, so typing a token and pressing Enter is enough.
  for await (const chunk of stdin) {
    text += chunk.toString()
    if (text.split('\n').length > names.length) break
  }
  const lines = text.split(/\r?\n/).map((line) => line.trim())
  return names.map((name, index) => {
    const value = lines[index]
    if (!value)
      throw usageError(
        `expected the ${name} on line ${index + 1} of stdin, got nothing`,
        `Pipe it in, e.g. printf '%s\\n' "$TOKEN" | crabbox …`,
      )
    return value
  })
}

/** Which file `config set`/`unset` edits: the user file, or `.crabbox.yaml` at the git root with `--repo`. */
export interface ConfigFileChoice {
  repo?: boolean
  cwd: string
}

export interface ConfigValueResult {
  key: string
  value?: unknown
  /** The file written (set, unset) or where the value came from (get). */
  file?: string
  source?: string
}

const secretKeys = new Set([
  'broker.token',
  'broker.adminToken',
  'coordinatorToken',
  'broker.access.clientId',
  'broker.access.clientSecret',
  'broker.access.token',
])

async function configFileFor(choice: ConfigFileChoice): Promise<string> {
  if (!choice.repo) return userConfigPath()
  const { gitRoot } = await import('../config/load.js')
  return join(await gitRoot(choice.cwd), '.crabbox.yaml')
}

/** Refuses a key the schema does not know, suggesting the closest one. */
export function checkConfigKey(key: string): void {
  const keys = configFileKeys()
  if (keys.includes(key)) return
  const inside = keys.filter((known) => known.startsWith(`${key}.`))
  if (inside.length > 0) {
    throw usageError(
      `${key} is a section, not a key`,
      `Name one of its keys: ${inside.slice(0, 6).join(', ')}${inside.length > 6 ? ', …' : ''}.`,
    )
  }
  const guess = closest(key, keys)
  throw usageError(
    `unknown config key ${JSON.stringify(key)}`,
    guess ? `Did you mean ${guess}? (docs/config.md lists every key)` : 'See docs/config.md for every key.',
  )
}

/** The value `config set KEY VALUE` stores: YAML scalars first (numbers, booleans, lists), then the text, then a comma list. */
function typedValue(key: string, raw: string): unknown {
  const candidates: unknown[] = []
  try {
    candidates.push(parseYaml(raw))
  } catch {
    // Not YAML: the text itself is the candidate.
  }
  candidates.push(
    raw,
    raw.split(',').map((item) => item.trim()),
  )
  let firstIssue = ''
  for (const candidate of candidates) {
    const data: Record<string, unknown> = {}
    let node = data
    const path = key.split('.')
    for (const part of path.slice(0, -1)) node = (node[part] = {}) as Record<string, unknown>
    node[path[path.length - 1]] = candidate
    const result = v.safeParse(FileConfig, data)
    if (result.success) return candidate
    firstIssue ||= describeIssue(result.issues[0])
  }
  throw usageError(`invalid value for ${key}: ${firstIssue}`, 'See docs/config.md for what each key accepts.')
}

/** `config set KEY VALUE`: validated against the schema, written 0600 with other keys and comments kept. */
export async function setConfigValue(key: string, raw: string, choice: ConfigFileChoice): Promise<ConfigValueResult> {
  checkConfigKey(key)
  if (choice.repo && secretKeys.has(key)) {
    throw usageError(`${key} is a secret and does not belong in the repo file`, `Run crabbox config set ${key} … without --repo.`)
  }
  const value = typedValue(key, raw)
  const file = await configFileFor(choice)
  await setUserConfigValues({ [key]: value }, file, { privateFolder: !choice.repo })
  return { key, value: secretKeys.has(key) ? 'set' : value, file }
}

/** `config unset KEY`: removes the key (and a section it empties) from the chosen file. */
export async function unsetConfigValue(key: string, choice: ConfigFileChoice): Promise<ConfigValueResult> {
  checkConfigKey(key)
  const file = await configFileFor(choice)
  if ((await readConfigValue(file, key)) === undefined) return { key, file }
  await setUserConfigValues({ [key]: undefined }, file, { privateFolder: !choice.repo })
  return { key, file }
}

/** File keys that the merged config keeps under another name. */
const mergedPath: Record<string, string> = {
  'lease.ttl': 'ttl',
  'lease.idleTimeout': 'idleTimeout',
  targetOS: 'target',
  coordinator: 'broker.url',
  coordinatorToken: 'broker.token',
  'sync.excludes': 'sync.exclude',
  'broker.provider': 'broker.provider',
}

/** `config get KEY`: the merged value (tokens only as set or missing) and where it came from. */
export function getConfigValue(context: ServiceContext, key: string): ConfigValueResult {
  checkConfigKey(key)
  const path = mergedPath[key] ?? key
  const { config, sources } = showConfig(context)
  let value: unknown = config
  for (const part of path.split('.')) value = (value as Record<string, unknown> | undefined)?.[part]
  return { key, value, source: sources[path] ?? (value === undefined ? undefined : 'default') }
}
