import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Config } from '../../config/schema.js'
import { leaseKeyDir } from '../../paths.js'
import { CrabboxError } from '../../errors.js'
import { knownHostsLines, renderCloudInit, type ConsoleHostKey } from '../../cloud/cloud-init.js'
import { candidateTypes, explicitType, unsupportedTargetMessage, type CloudProviderName } from '../../cloud/classes.js'
import { leaseKeyType } from '../../cloud/targets.js'
import { renderEc2LaunchUserData } from '../../cloud/windows-bootstrap.js'
import { leaseKeyFile } from '../../transport/ssh/keys.js'
import { windowsRunner, windowsSshUser, windowsWorkRoot } from '../windows.js'
import { CloudApiError, type CloudMachine, machineLabels, machineName, providerKeyName } from '../../cloud/cloud-machines.js'
import type { CreatedMachine } from '../../cloud/hetzner-api.js'
import type { TailscaleBootstrap } from '../../cloud/tailscale-init.js'
import { allocateSlug } from '../../protocol/ids.js'
import { renderTailscaleHostname } from '../../protocol/tailscale.js'
import { pickByIdOrSlug } from '../pick.js'
import { isMacLease, MAC_SSH, macLaunch, macRefusal } from './macos.js'
import type { AcquireRequest, DirectProvider, Lease, ProviderContext } from '../types.js'

/**
 * Direct-mode cloud providers share everything but the API calls: labels are
 * the lease state (no local records), the bootstrap is the shared cloud-init,
 * and provider failures become exit codes with a next step.
 */

export interface CreateRequest {
  leaseId: string
  name: string
  labels: Record<string, string>
  types: string[]
  userData: string
  sshPublicKey: string
  keyName: string
  /** The runner's OS when not Linux (providers in `DIRECT_WINDOWS_CLOUDS` take windows). */
  target?: 'linux' | 'windows' | 'macos'
  windowsMode?: 'normal' | 'wsl2'
}

/** The provider-specific half: API calls over one set of credentials. */
export interface CloudBackend {
  /** Where machines go, for progress lines (`fsn1`, `eu-west-1`). */
  where: string
  create(request: CreateRequest): Promise<CreatedMachine>
  find(leaseId: string): Promise<CloudMachine | undefined>
  list(): Promise<CloudMachine[]>
  delete(target: { leaseId: string; id?: string; region?: string; keyName: string }): Promise<void>
  /** Moves the machine's `expires_at` label forward, so cleanup never takes a box that is in use. */
  touch(target: { id: string; region?: string }): Promise<void>
  /** The machine's status word from the provider's API (one request, no retries). */
  state(target: { id: string; region?: string }): Promise<string | undefined>
  /** Host keys the bootstrap printed to the console, where the provider exposes it. */
  consoleHostKeys?(machine: CloudMachine): Promise<ConsoleHostKey[]>
  /** How long to wait for console host keys before falling back to trust on first use. */
  consoleWaitMs?: number
}

const titles: Record<CloudProviderName, string> = { hetzner: 'Hetzner', aws: 'AWS', azure: 'Azure' }

/** Who made a direct-mode machine, for its labels (the broker uses the caller's identity). */
function identity(env: NodeJS.ProcessEnv = process.env): { owner: string; org: string } {
  return {
    owner: env.CRABBOX_OWNER || env.GIT_AUTHOR_EMAIL || env.GIT_COMMITTER_EMAIL || env.USER || 'unknown',
    org: env.CRABBOX_ORG || 'local',
  }
}

/** A cloud API failure as a CLI error: exit code by what the user can do about it. */
export function cloudError(provider: CloudProviderName, error: unknown): unknown {
  if (!(error instanceof CloudApiError)) return error
  const title = titles[provider]
  switch (error.category) {
    case 'auth':
      return new CrabboxError(error.message, {
        exit: 'auth',
        code: 'provider_auth',
        hint: `check the ${title} credentials crabbox uses (see docs/providers/${provider}.md)`,
        cause: error,
      })
    case 'capacity':
    case 'quota':
    case 'unsupported':
      return new CrabboxError(error.message, {
        exit: 'provisioning',
        code: 'no_capacity',
        hint: 'try another --class or --type, another location/region, or again in a few minutes',
        cause: error,
      })
    case 'rate_limit':
    case 'transient':
      return new CrabboxError(error.message, {
        exit: 'provisioning',
        code: 'provider_unavailable',
        hint: `${title} did not answer in time; try again (crabbox cleanup removes anything left over)`,
        cause: error,
      })
    default:
      return new CrabboxError(error.message, { exit: 'provisioning', code: 'provider_failed', cause: error })
  }
}

function toLease(provider: CloudProviderName, machine: CloudMachine, config: Config): Lease {
  const leaseId = machine.labels.lease ?? ''
  const dir = leaseKeyDir(leaseId)
  const expires = Number(machine.labels.expires_at)
  const idle = Number(machine.labels.idle_timeout_secs)
  const mac = machine.labels.target === 'macos'
  // Windows runners: the RSA key, Administrator (whose keys the bootstrap installs), the Windows work root.
  const windows = machine.labels.target === 'windows' ? windowsRunner(machine.labels.windows_mode) : undefined
  return {
    id: leaseId,
    slug: machine.labels.slug ?? leaseId,
    provider,
    ssh: {
      host: machine.host ?? '',
      port: mac ? MAC_SSH.port : Number(config.ssh.port),
      fallbackPorts: mac ? [] : config.ssh.fallbackPorts.map(Number),
      user: mac ? MAC_SSH.user : windows ? windowsSshUser(provider) : config.ssh.user,
      privateKeyPath: join(dir, leaseKeyFile(leaseKeyType(provider, windows ? 'windows' : 'linux'))),
      knownHostsPath: join(dir, 'known_hosts'),
    },
    workRoot: mac ? MAC_SSH.workRoot : windows ? windowsWorkRoot(windows.mode) : config.workRoot,
    ...(windows && { windows }),
    serverType: machine.serverType,
    state: 'active',
    keep: machine.labels.keep === 'true',
    ...(Number.isFinite(expires) && expires > 0 ? { expiresAt: new Date(expires * 1000).toISOString() } : {}),
    ...(Number.isFinite(idle) && idle > 0 ? { idleTimeoutSeconds: idle } : {}),
    details: {
      machineId: machine.id,
      name: machine.name,
      region: machine.region,
      market: machine.market,
      status: machine.status,
      ...(machine.labels.tailscale === 'true' ? { tailscale: { enabled: true, hostname: machine.labels.tailscale_hostname } } : {}),
    },
    capabilities: {
      desktop: machine.labels.desktop === 'true',
      browser: machine.labels.browser === 'true',
      code: machine.labels.code === 'true',
    },
  }
}

const isLeaseMachine = (m: CloudMachine) => /^cbx_[0-9a-f]{12}$/.test(m.labels.lease ?? '')

async function pinConsoleHostKeys(
  backend: CloudBackend,
  machine: CloudMachine,
  request: AcquireRequest,
  config: Config,
  context: ProviderContext,
): Promise<void> {
  if (!backend.consoleHostKeys || !machine.host) return
  const deadline = Date.now() + (backend.consoleWaitMs ?? 90_000)
  context.progress.phase(`reading ${machine.name}'s host keys from its console`)
  for (let pause = 2_000; ; pause = Math.min(pause * 2, 15_000)) {
    const keys = await backend.consoleHostKeys(machine).catch(() => [])
    if (keys.length) {
      const ports = [config.ssh.port, ...config.ssh.fallbackPorts]
      await mkdir(dirname(request.knownHostsPath), { recursive: true, mode: 0o700 })
      await writeFile(request.knownHostsPath, `${knownHostsLines(machine.host, ports, keys).join('\n')}\n`, { mode: 0o600 })
      return
    }
    if (Date.now() + pause > deadline) {
      context.progress.info(`no host keys on ${machine.name}'s console yet; trusting the first key it offers`)
      return
    }
    await new Promise((resolve) => setTimeout(resolve, pause))
  }
}

/**
 * Direct mode's Tailscale join: the key is the user's own, read from the
 * variable `tailscale.authKeyEnv` names (checked before anything is made, in
 * services/lease-request.ts); it goes into the user data only.
 */
function directTailscale(config: Config, lease: { id: string; slug: string; provider: string }): TailscaleBootstrap | undefined {
  if (!config.tailscale.enabled) return undefined
  const exitNode = config.tailscale.exitNode?.trim()
  return {
    authKey: (process.env[config.tailscale.authKeyEnv] ?? '').trim(),
    hostname: renderTailscaleHostname(config.tailscale.hostnameTemplate, lease),
    tags: config.tailscale.tags,
    ...(exitNode ? { exitNode, exitNodeAllowLanAccess: config.tailscale.exitNodeAllowLanAccess } : {}),
  }
}

/** The runner's cloud-init; bad ssh or workRoot settings are a usage error. */
function bootstrapUserData(title: string, config: Config, sshPublicKey: string, tailscale?: TailscaleBootstrap): string {
  try {
    return renderCloudInit({
      sshUser: config.ssh.user,
      sshPublicKey,
      sshPort: config.ssh.port,
      sshFallbackPorts: config.ssh.fallbackPorts,
      workRoot: config.workRoot,
      desktop: config.desktop,
      browser: config.browser,
      code: config.code,
      ...(tailscale ? { tailscale } : {}),
    })
  } catch (error) {
    throw new CrabboxError(`cannot bootstrap ${/^[aeiou]/i.test(title) ? 'an' : 'a'} ${title} runner: ${(error as Error).message}`, {
      exit: 'usage',
      hint: tailscale
        ? `check ssh.*, workRoot and tailscale.* (crabbox config show) and the key in ${config.tailscale.authKeyEnv}`
        : 'check ssh.user, ssh.port, ssh.fallbackPorts and workRoot (crabbox config show)',
    })
  }
}

/** A create whose outcome is unknown: whatever carries this lease's label must not outlive it. */
const deleteOnUnknownOutcome =
  (backend: CloudBackend, leaseId: string, keyName: string) =>
  async (error: unknown): Promise<never> => {
    if (error instanceof CloudApiError && error.retryable) await backend.delete({ leaseId, keyName }).catch(() => undefined)
    throw error
  }

/** EC2Launch user data for a Windows runner: OpenSSH on with the lease key; the rest is bootstrapped over SSH. */
function windowsUserData(sshPublicKey: string): string {
  try {
    return renderEc2LaunchUserData(sshPublicKey)
  } catch (error) {
    throw new CrabboxError(`cannot bootstrap a Windows runner: ${(error as Error).message}`, { exit: 'usage' })
  }
}

/** Says which types (and regions, markets) had no capacity before the one that was made. */
function reportAttempts(progress: ProviderContext['progress'], attempts: CreatedMachine['attempts']): void {
  for (const attempt of attempts)
    progress.info(
      `${attempt.serverType}${attempt.region ? ` in ${attempt.region}` : ''}${attempt.market ? ` (${attempt.market})` : ''} unavailable: ${attempt.category}`,
    )
}

/** Refuses a target this provider cannot run (macOS on AWS: what a Mac lease cannot have), before anything is made. */
function assertTarget(provider: CloudProviderName, config: Config): void {
  const refused = isMacLease(provider, config.target) ? macRefusal(config) : unsupportedTargetMessage(provider, config.target, 'direct')
  if (refused) throw typeof refused === 'string' ? new CrabboxError(refused, { exit: 'usage' }) : refused
}

/** Which OS the machine runs, the instance types to try in order, and its first-boot user data. */
function launchPlan(provider: CloudProviderName, title: string, config: Config, publicKey: string) {
  const mac = isMacLease(provider, config.target)
  const windows = config.target === 'windows'
  if (mac) return { mac, windows, ...macLaunch(config) }
  const types = candidateTypes(provider, config.class, explicitType(config.class, config.serverType))
  return { mac, windows, types, userData: windows ? windowsUserData(publicKey) : bootstrapUserData(title, config, publicKey) }
}

/** A direct provider plus the heartbeat cloud leases need: `touch` refreshes the expiry labels. */
export type DirectCloudProvider = DirectProvider & { touch(lease: Lease, context: ProviderContext): Promise<void> }

export function directCloudProvider(provider: CloudProviderName, open: (config: Config) => CloudBackend): DirectCloudProvider {
  const title = titles[provider]
  const backendFor = (context: ProviderContext) => open(context.config)
  const list = async (context: ProviderContext) => {
    try {
      return (await backendFor(context).list()).filter(isLeaseMachine).map((m) => toLease(provider, m, context.config))
    } catch (error) {
      throw cloudError(provider, error)
    }
  }

  return {
    name: provider,
    readiness: 'managed',

    async acquire(request, context) {
      const { config, progress } = context
      assertTarget(provider, config)
      const plan = launchPlan(provider, title, config, request.publicKey)
      const { mac, windows, types } = plan
      let userData = plan.userData
      const backend = backendFor(context)
      try {
        const live = (await backend.list()).filter(isLeaseMachine)
        const slug = allocateSlug(
          request.leaseId,
          live.map((m) => m.labels.slug ?? ''),
        )
        const keyName = providerKeyName(request.leaseId)
        const { org, owner } = identity()
        const name = machineName(request.leaseId, slug)
        const tailscale = directTailscale(config, { id: request.leaseId, slug, provider })
        userData = tailscale && !windows ? bootstrapUserData(title, config, request.publicKey, tailscale) : userData
        progress.phase(`creating ${title} machine ${name} (${types[0]}) in ${backend.where}`)
        const created = await backend
          .create({
            leaseId: request.leaseId,
            name,
            labels: machineLabels({
              provider,
              leaseId: request.leaseId,
              slug,
              owner,
              org,
              profile: config.profile,
              class: config.class,
              serverType: types[0],
              target: config.target,
              keep: request.keep,
              providerKey: keyName,
              ttlSeconds: request.ttlSeconds,
              idleTimeoutSeconds: request.idleTimeoutSeconds,
              createdAt: new Date(),
              desktop: config.desktop,
              browser: config.browser,
              code: config.code,
              tailscale: tailscale && { hostname: tailscale.hostname, exitNode: tailscale.exitNode },
              windowsMode: windows ? config.windows.mode : undefined,
            }),
            types,
            userData,
            sshPublicKey: request.publicKey,
            keyName,
            target: config.target,
            ...(windows && { windowsMode: config.windows.mode }),
          })
          .catch(deleteOnUnknownOutcome(backend, request.leaseId, keyName))
        reportAttempts(progress, created.attempts)
        const machine = created.machine
        progress.info(
          `${created.adopted ? 'adopted' : 'created'} ${machine.name}: ${machine.serverType}${machine.market ? ` ${machine.market}` : ''} at ${machine.host}`,
        )
        if (!mac) await pinConsoleHostKeys(backend, machine, request, config, context) // a Mac prints no host keys
        const lease = toLease(provider, machine, config)
        return {
          ...lease,
          id: request.leaseId,
          ssh: { ...lease.ssh, privateKeyPath: request.privateKeyPath, knownHostsPath: request.knownHostsPath },
        }
      } catch (error) {
        throw cloudError(provider, error)
      }
    },

    async resolve(idOrSlug, context) {
      return pickByIdOrSlug(await list(context), idOrSlug, title)
    },

    async release(lease, context) {
      const backend = backendFor(context)
      try {
        await backend.delete({
          leaseId: lease.id,
          id: typeof lease.details.machineId === 'string' ? lease.details.machineId : undefined,
          region: typeof lease.details.region === 'string' ? lease.details.region : undefined,
          keyName: providerKeyName(lease.id),
        })
      } catch (error) {
        throw cloudError(provider, error)
      }
    },

    list,

    async machineState(lease, context) {
      if (typeof lease.details.machineId !== 'string') return undefined
      return backendFor(context).state({
        id: lease.details.machineId,
        region: typeof lease.details.region === 'string' ? lease.details.region : undefined,
      })
    },

    async touch(lease, context) {
      if (typeof lease.details.machineId !== 'string') return
      try {
        await backendFor(context).touch({
          id: lease.details.machineId,
          region: typeof lease.details.region === 'string' ? lease.details.region : undefined,
        })
      } catch (error) {
        throw cloudError(provider, error)
      }
    },
  }
}
