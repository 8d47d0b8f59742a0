import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { CrabboxError } from '../../errors.js'

/**
 * Local cloud credentials for direct mode. Nothing here is ever written to
 * config, labels or logs.
 */

export function hetznerToken(env: NodeJS.ProcessEnv = process.env): string {
  const token = env.HCLOUD_TOKEN?.trim() || env.HETZNER_TOKEN?.trim()
  if (!token) {
    throw new CrabboxError('no Hetzner Cloud API token for direct mode', {
      exit: 'auth',
      hint: 'export HCLOUD_TOKEN=<read/write API token from the Hetzner Cloud console> (or configure a broker with `crabbox login`)',
    })
  }
  return token
}

export interface AwsCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

/** `[profile]` sections of an AWS shared credentials file, keys lowercased. */
function iniSection(text: string, section: string): Record<string, string> {
  const out: Record<string, string> = {}
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#') || line.startsWith(';')) continue
    const header = /^\[(.+)\]$/.exec(line)
    if (header) current = header[1].trim().replace(/^profile\s+/, '')
    else if (current === section) {
      const eq = line.indexOf('=')
      if (eq > 0) out[line.slice(0, eq).trim().toLowerCase()] = line.slice(eq + 1).trim()
    }
  }
  return out
}

/**
 * Env keys first (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
 * then the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or
 * ~/.aws/credentials) for `AWS_PROFILE` or `default`.
 */
export function awsCredentials(env: NodeJS.ProcessEnv = process.env): AwsCredentials {
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    return {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      sessionToken: env.AWS_SESSION_TOKEN || undefined,
    }
  }
  const profile = env.AWS_PROFILE || 'default'
  const file = env.AWS_SHARED_CREDENTIALS_FILE || join(env.HOME || homedir(), '.aws', 'credentials')
  let section: Record<string, string> = {}
  try {
    section = iniSection(readFileSync(file, 'utf8'), profile)
  } catch {
    // no file: fall through to the error below
  }
  if (section.aws_access_key_id && section.aws_secret_access_key) {
    return {
      accessKeyId: section.aws_access_key_id,
      secretAccessKey: section.aws_secret_access_key,
      sessionToken: section.aws_session_token || undefined,
    }
  }
  throw new CrabboxError('no AWS credentials for direct mode', {
    exit: 'auth',
    hint: `export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add a [${profile}] profile to ${file} (or configure a broker with \`crabbox login\`)`,
  })
}

export interface AzureCredentials {
  tenantId: string
  clientId: string
  clientSecret: string
  subscriptionId: string
}

/** The first Azure service-principal variable that is missing (settings may come from config), else undefined. */
export function azureMissingVariable(
  config: { azure: { tenantId?: string; clientId?: string; subscriptionId?: string } },
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (!config.azure.tenantId) return 'AZURE_TENANT_ID'
  if (!config.azure.clientId) return 'AZURE_CLIENT_ID'
  if (!env.AZURE_CLIENT_SECRET?.trim()) return 'AZURE_CLIENT_SECRET'
  if (!config.azure.subscriptionId) return 'AZURE_SUBSCRIPTION_ID'
  return undefined
}

/**
 * A service principal for direct mode: tenant, client and subscription from the
 * `azure.*` settings (`AZURE_*` or `CRABBOX_AZURE_*` variables), the secret from
 * `AZURE_CLIENT_SECRET` only (never from a config file).
 */
export function azureCredentials(
  config: { azure: { tenantId?: string; clientId?: string; subscriptionId?: string } },
  env: NodeJS.ProcessEnv = process.env,
): AzureCredentials {
  const missing = azureMissingVariable(config, env)
  if (missing) {
    throw new CrabboxError(`no Azure credentials for direct mode: ${missing} is not set`, {
      exit: 'auth',
      hint: `export ${missing} (a service principal needs AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_SUBSCRIPTION_ID), or configure a broker with \`crabbox login\``,
    })
  }
  return {
    tenantId: config.azure.tenantId!,
    clientId: config.azure.clientId!,
    clientSecret: env.AZURE_CLIENT_SECRET!.trim(),
    subscriptionId: config.azure.subscriptionId!,
  }
}
