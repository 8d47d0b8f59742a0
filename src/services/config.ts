import type { ServiceContext } from './context.js'
import { userConfigPath } from '../paths.js'
import type { Config } from '../config/schema.js'
import { setUserConfigValues } from '../config/write.js'
import { usageError } from '../errors.js'

type Secret = 'set' | 'missing'
const secret = (value: string | undefined): Secret => (value ? 'set' : 'missing')

/** The merged config with secrets replaced by `set`/`missing`: safe to paste into an issue. */
export type RedactedConfig = Omit<Config, 'sources' | 'broker'> & {
  broker: Omit<Config['broker'], 'token' | 'adminToken'> & { token: Secret; adminToken: Secret }
}

export interface ConfigView {
  config: RedactedConfig
  /** Dotted key → where its value came from (a file path, `env NAME`, `flag --name`); absent keys are defaults. */
  sources: Record<string, string>
  /** Config files read, lowest precedence first. */
  files: string[]
  userConfig: string
  repoRoot?: string
}

export function showConfig(context: ServiceContext): ConfigView {
  const { sources, broker, ...rest } = context.config
  return {
    config: { ...rest, broker: { ...broker, token: secret(broker.token), adminToken: secret(broker.adminToken) } },
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
