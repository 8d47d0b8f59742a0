import { execFile } from 'node:child_process'
import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { promisify } from 'node:util'
import { loadConfig } from '../config/load.js'
import { userConfigPath } from '../paths.js'
import type { Config } from '../config/schema.js'
import { CrabboxError } from '../errors.js'
import { HealthResponse } from '../protocol/auth.js'
import { WhoamiResponse } from '../protocol/leases.js'
import { azureMissingVariable } from '../providers/cloud/credentials.js'
import { accessAuth, brokerClient } from '../transport/broker/client.js'
import { ownSshKey } from '../transport/ssh/keys.js'
import { createProgress, type Progress } from '../ui/progress.js'
import { fail, pass, type DoctorCheck } from './doctor-checks.js'
import { remoteDoctor } from './remote-doctor.js'
import { checkBlacksmith, checkDaytona, checkE2b, checkIslo } from './doctor-delegated.js'
import { isDelegatedProvider } from '../providers/registry.js'

export type { DoctorCheck } from './doctor-checks.js'

export interface DoctorReport {
  ok: boolean
  checks: DoctorCheck[]
}

export interface DoctorOptions {
  cwd: string
  env?: NodeJS.ProcessEnv
  warn?: (message: string) => void
  /** `--id`: also run the remote doctor on this lease over SSH. */
  id?: string
  /** Config flags (`--provider`), over every other layer. */
  flags?: Record<string, unknown>
  /** Where resolving the lease reports (`--id`). */
  progress?: Progress
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error))

function checkNode(): DoctorCheck {
  const [major, minor] = process.versions.node.split('.').map(Number)
  return major > 20 || (major === 20 && minor >= 19)
    ? pass('node', `v${process.versions.node}`)
    : fail('node', `v${process.versions.node} is too old`, 'Install Node.js 20.19 or newer.')
}

async function checkGit(): Promise<DoctorCheck> {
  try {
    const { stdout } = await promisify(execFile)('git', ['--version'], { timeout: 10_000 })
    return pass('git', stdout.trim())
  } catch {
    return fail('git', 'git is not on PATH; sync needs it to list files', 'Install git and make sure it is on PATH.')
  }
}

/** The user config holds tokens: nobody but its owner may read it. */
async function checkConfigPermissions(path: string): Promise<DoctorCheck | undefined> {
  let mode: number
  try {
    mode = (await stat(path)).mode & 0o777
  } catch {
    return undefined
  }
  if ((mode & 0o077) === 0) return pass('config permissions', `${path} is ${mode.toString(8).padStart(4, '0')}`)
  return fail(
    'config permissions',
    `${path} is ${mode.toString(8).padStart(4, '0')}: group or others can read your broker token`,
    `chmod 600 ${path}`,
  )
}

/**
 * Leases crabbox provisions use per-lease keys; hosts it does not (a broker's static
 * pool, the ssh provider) need the user's own key: `ssh.key`, else `~/.ssh/id_ed25519`
 * or `~/.ssh/id_rsa`.
 */
async function checkSshKey(config: Config, env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const key = config.ssh.key
  // The ssh provider without a host is reported by the provider check; its key matters once there is one.
  const staticChosen = config.broker.url ? config.provider === 'ssh' : config.provider === 'ssh' && Boolean(config.static.host)
  const ownHosts = config.broker.url ? 'static pool hosts' : staticChosen ? 'the ssh host' : undefined
  if (!key) {
    const found = ownSshKey(undefined, env.HOME || undefined)
    if (!ownHosts) return pass('ssh key', 'per-lease keys (generated for each lease)')
    if (found) return pass('ssh key', `per-lease keys; ${ownHosts}: ${found} (set ssh.key to use another)`)
    if (env.SSH_AUTH_SOCK && config.broker.url) return pass('ssh key', `per-lease keys; ${ownHosts}: the ssh-agent's keys`)
    const none = `no key for ${ownHosts}: ssh.key is unset and there is no ~/.ssh/id_ed25519 or ~/.ssh/id_rsa`
    // With the broker choosing, its default may not be the static pool: say it, without failing.
    if (!staticChosen) return pass('ssh key', `per-lease keys; ${none} (needed only if the broker hands out static hosts)`)
    return fail('ssh key', none, 'Set ssh.key (or CRABBOX_SSH_KEY) to a key the host accepts, or put it at ~/.ssh/id_ed25519.')
  }
  const path = ownSshKey(key, env.HOME || undefined)!
  try {
    await access(path, constants.R_OK)
    await access(`${path}.pub`, constants.R_OK)
    return pass('ssh key', path)
  } catch {
    return fail(
      'ssh key',
      `${path} or ${path}.pub is missing or unreadable`,
      `Create it with \`ssh-keygen -t ed25519 -f ${path}\`, or unset ssh.key / CRABBOX_SSH_KEY.`,
    )
  }
}

/** Whether Cloudflare Access credentials are set (never their values). */
function checkAccess(config: Config): DoctorCheck {
  const auth = accessAuth(config.broker.access)
  if (auth === 'incomplete')
    return fail(
      'broker access',
      'Cloudflare Access service token is incomplete: the client ID and the secret are both needed',
      'Set both broker.access.clientId and broker.access.clientSecret (CRABBOX_ACCESS_CLIENT_ID, CRABBOX_ACCESS_CLIENT_SECRET).',
    )
  return pass(
    'broker access',
    auth === 'missing'
      ? 'no Cloudflare Access credentials (needed only when the broker is behind Access)'
      : `Cloudflare Access credentials set (${auth})`,
  )
}

async function checkBroker(config: Config): Promise<DoctorCheck[]> {
  const client = brokerClient(config)!
  const checks: DoctorCheck[] = [checkAccess(config)]
  try {
    const health = await client.request('GET', '/v1/health', { schema: HealthResponse, timeoutMs: 10_000 })
    checks.push(pass('broker', `${client.url} (${health.service})`))
  } catch (error) {
    checks.push(
      fail(
        'broker',
        `${client.url} is not healthy: ${message(error)}`,
        (error as CrabboxError).code === 'access_denied'
          ? (error as CrabboxError).hint!
          : 'Check broker.url (`crabbox config show`) and your network.',
      ),
    )
    return checks
  }
  if (!config.broker.token) {
    checks.push(fail('broker login', 'no broker token configured', 'Run `crabbox login`.'))
  } else {
    try {
      const who = await client.request('GET', '/v1/whoami', { schema: WhoamiResponse, timeoutMs: 10_000 })
      checks.push(pass('broker login', `user=${who.owner} org=${who.org} auth=${who.auth}`))
    } catch (error) {
      checks.push(fail('broker login', message(error), (error as CrabboxError).hint ?? 'Run `crabbox login`.'))
    }
  }
  if (config.broker.adminToken) {
    try {
      await client.request('GET', '/v1/pool', { admin: true, timeoutMs: 10_000 })
      checks.push(pass('broker admin', 'admin token accepted'))
    } catch (error) {
      checks.push(fail('broker admin', message(error), 'Fix broker.adminToken / CRABBOX_ADMIN_TOKEN, or remove it.'))
    }
  }
  return checks
}

/** Direct mode: the provider's own prerequisites, checked without creating anything. */
function checkProvider(config: Config, env: NodeJS.ProcessEnv): DoctorCheck {
  const name = `provider ${config.provider}`
  switch (config.provider) {
    case 'local':
      return pass(name, 'embedded: runs on this machine over a loopback SSH server')
    case 'ssh':
      return config.static.host
        ? pass(name, `${config.static.user ?? config.ssh.user}@${config.static.host}:${config.static.port ?? config.ssh.port}`)
        : fail(name, 'no static host configured', 'Set static.host (or CRABBOX_STATIC_HOST / --static-host).')
    case 'hetzner':
      return env.HCLOUD_TOKEN || env.HETZNER_TOKEN
        ? pass(name, 'API token set')
        : fail(name, 'no Hetzner API token', 'Set HCLOUD_TOKEN, or use a broker (`crabbox login`).')
    case 'aws':
      return (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) || env.AWS_PROFILE
        ? pass(name, `region ${config.aws.region}`)
        : fail(
            name,
            'no AWS credentials in the environment',
            'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or use a broker.',
          )
    case 'azure': {
      const missing = azureMissingVariable(config, env)
      return missing
        ? fail(name, `no ${missing}`, `Set ${missing} (and the other Azure service principal variables), or use a broker.`)
        : pass(name, `subscription ${config.azure.subscriptionId}, ${config.azure.location}`)
    }
    case 'blacksmith-testbox':
      return checkBlacksmith(config, env)
    case 'islo':
      return checkIslo(config, env)
    case 'e2b':
      return checkE2b(config, env)
    case 'daytona':
      return checkDaytona(config, env)
    default:
      return fail(
        name,
        `unknown provider ${config.provider}`,
        'Use local, ssh, hetzner, aws, azure, blacksmith-testbox, islo, e2b or daytona (`crabbox config show` says where it was set).',
      )
  }
}

/** Runs every check; never throws for a failed check, so one problem does not hide the next. */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const env = options.env ?? process.env
  const checks: DoctorCheck[] = [checkNode(), await checkGit()]
  let config: Config | undefined
  try {
    const loaded = await loadConfig({ cwd: options.cwd, env, warn: options.warn, flags: options.flags })
    config = loaded.config
    checks.push(pass('config', loaded.files.length ? loaded.files.join(', ') : 'defaults only (no config files)'))
  } catch (error) {
    checks.push(fail('config', message(error), (error as CrabboxError).hint ?? 'Fix the config file.'))
  }
  const permissions = await checkConfigPermissions(userConfigPath(env))
  if (permissions) checks.push(permissions)
  if (config) {
    checks.push(await checkSshKey(config, env))
    // Delegated providers are never brokered: their own check stands in for the broker's.
    const brokered = config.broker.url && !isDelegatedProvider(config.provider)
    checks.push(...(brokered ? await checkBroker(config) : [checkProvider(config, env)]))
    if (options.id) checks.push(...(await remoteDoctor(config, options.id, options.progress ?? createProgress({ quiet: true }))))
  }
  return { ok: checks.every((check) => check.ok), checks }
}
