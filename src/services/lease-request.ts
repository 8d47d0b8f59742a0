import type { Config } from '../config/schema.js'
import { whoCanRun } from '../cloud/targets.js'
import { CrabboxError } from '../errors.js'
import type { LeaseRecord, LeaseRequest } from '../protocol/leases.js'
import { desktopRefusal } from './desktop/refusal.js'

/**
 * What a new lease asks for, from the merged config: the broker's lease request,
 * and the checks direct-mode providers make before they start anything.
 *
 * Placement settings (`hetzner.*`, `aws.*`, `azure.location`/`.image`, `capacity.*`, `ssh.*`, `workRoot`,
 * `static.workRoot`, `desktop`/`browser`/`code`, `network`) are sent only when
 * a config file, the environment or a flag set them: the broker honours each
 * field it gets or refuses the lease naming it, so a default is never sent as if
 * someone had asked for it. Provider-specific sections go only to that provider,
 * or to the broker's choice when no provider is named.
 */

type Ask = Omit<LeaseRequest, 'sshPublicKey' | 'leaseID' | 'keep' | 'ttlSeconds' | 'idleTimeoutSeconds' | 'providerKey'>

/** Drops undefined values, and empty objects, so the request carries only what was asked. */
function compact<T extends Record<string, unknown>>(value: T): T | undefined {
  const entries = Object.entries(value).filter(([, item]) => item !== undefined)
  return entries.length ? (Object.fromEntries(entries) as T) : undefined
}

/** The placement fields of a broker lease request (`provider` is the name sent, undefined when the broker chooses). */
export function leaseAsk(config: Config, provider: string | undefined): Ask {
  const set = <T>(path: string, value: T): T | undefined => (config.sources[path] !== undefined ? value : undefined)
  const to = (name: string) => provider === undefined || provider === name
  const capacity = compact({
    market: set('capacity.market', config.capacity.market),
    strategy: set('capacity.strategy', config.capacity.strategy),
    fallback: set('capacity.fallback', config.capacity.fallback),
    regions: set('capacity.regions', config.capacity.regions),
    availabilityZones: set('capacity.availabilityZones', config.capacity.availabilityZones),
    hints: set('capacity.hints', config.capacity.hints),
  })
  // A static host's own work root (static.workRoot, --static-work-root) wins there, as in direct mode.
  const workRoot = (provider === 'static' ? set('static.workRoot', config.static.workRoot) : undefined) ?? set('workRoot', config.workRoot)
  const ask: Ask = {
    target: config.target,
    windowsMode: config.target === 'windows' ? config.windows.mode : undefined,
    profile: config.profile,
    class: config.class,
    serverType: config.serverType,
    serverTypeExplicit: config.serverType ? true : undefined,
    desktop: set('desktop', config.desktop),
    browser: set('browser', config.browser),
    code: set('code', config.code),
    network: set('network', config.network),
    ...(config.tailscale.enabled && {
      tailscale: true,
      tailscaleTags: set('tailscale.tags', config.tailscale.tags),
      tailscaleHostname: set('tailscale.hostnameTemplate', config.tailscale.hostnameTemplate),
      tailscaleExitNode: set('tailscale.exitNode', config.tailscale.exitNode),
      tailscaleExitNodeAllowLanAccess: set('tailscale.exitNodeAllowLanAccess', config.tailscale.exitNodeAllowLanAccess),
    }),
    capacity,
    ...(to('hetzner') && {
      location: set('hetzner.location', config.hetzner.location),
      image: set('hetzner.image', config.hetzner.image),
    }),
    ...(to('aws') && {
      awsRegion: set('aws.region', config.aws.region),
      awsAMI: set('aws.ami', config.aws.ami),
      awsSGID: set('aws.securityGroupId', config.aws.securityGroupId),
      awsSubnetID: set('aws.subnetId', config.aws.subnetId),
      awsProfile: set('aws.instanceProfile', config.aws.instanceProfile),
      awsRootGB: set('aws.rootGB', config.aws.rootGB),
      awsSSHCIDRs: set('aws.sshCIDRs', config.aws.sshCIDRs),
      // The dedicated host only matters to a macOS lease; the broker refuses it on any other.
      awsMacHostID: config.target === 'macos' ? config.aws.macHostId : undefined,
    }),
    ...(to('azure') && {
      azureLocation: set('azure.location', config.azure.location),
      azureImage: set('azure.image', config.azure.image),
    }),
    sshUser: set('ssh.user', config.ssh.user),
    sshPort: set('ssh.port', config.ssh.port),
    sshFallbackPorts: set('ssh.fallbackPorts', config.ssh.fallbackPorts),
    workRoot,
  }
  return compact(ask) ?? ask
}

/**
 * Capabilities the request asked for that the lease does not have. A broker of
 * this version refuses such a lease; an older one may grant it without them.
 */
export function missingCapabilities(config: Config, lease: LeaseRecord): string[] {
  const missing: string[] = (['desktop', 'browser', 'code'] as const).filter(
    (capability) => config[capability] && lease[capability] !== true,
  )
  if (config.tailscale.enabled && lease.tailscale?.enabled !== true) missing.push('tailscale')
  return missing
}

/** Direct providers whose machines crabbox bootstraps with a desktop, a browser and code-server when asked. */
const INSTALLS_CAPABILITIES = new Set(['hetzner', 'aws', 'azure'])

/** Providers that check the target themselves (the clouds, when they create) or below (ssh, local). */
const CHECKS_TARGET = new Set(['hetzner', 'aws', 'azure', 'ssh', 'local'])

const HOST_OS: Partial<Record<NodeJS.Platform, Config['target']>> = { linux: 'linux', darwin: 'macos' }

/**
 * Direct mode: refuses (exit 2) what the provider cannot give, before anything is
 * made. Target rules of the cloud providers live with them (`unsupportedTargetMessage`).
 */
export function checkDirectAsk(provider: string, config: Config): void {
  const refuse = (message: string, hint: string) => new CrabboxError(message, { exit: 'usage', code: 'unsupported', hint })
  // The delegated providers' sandboxes are Linux: another target is refused, naming who can.
  if (config.target !== 'linux' && !CHECKS_TARGET.has(provider))
    throw refuse(
      `the ${provider} provider runs Linux sandboxes only; ${whoCanRun(config.target)}`,
      'drop --target, or pick a provider that has that OS',
    )
  if (config.target === 'windows') checkDirectWindows(provider, config, refuse)
  for (const capability of ['desktop', 'browser', 'code'] as const) {
    if (!config[capability] || INSTALLS_CAPABILITIES.has(provider)) continue
    if (provider === 'ssh' && config.static[capability]) continue
    const what = capability === 'code' ? 'code-server' : `a ${capability}`
    throw refuse(
      provider === 'ssh'
        ? `the ssh provider's host has no ${capability === 'code' ? 'code-server' : capability} declared: crabbox installs nothing on a static host`
        : `the ${provider} provider cannot give a lease ${what}: crabbox installs it on hetzner, aws and azure machines only`,
      provider === 'ssh'
        ? `set it up on the host (docs/desktop.md), then declare it with static.${capability}: true (or CRABBOX_STATIC_${capability.toUpperCase()}=1); or drop --${capability}`
        : `drop --${capability} (or ${capability}: true in ${config.sources[capability] ?? 'the config'})`,
    )
  }
  checkDirectTailscale(provider, config, refuse)
  if (provider === 'local' && config.target !== HOST_OS[process.platform])
    throw refuse(
      `the local provider runs on this machine, which is not a ${config.target} machine; ${whoCanRun(config.target)}`,
      'drop --target, or pick a provider that has that OS',
    )
  const refused = refusedCapacity(provider, config)
  if (refused) throw refuse(`${refused.path}: ${refused.reason}`, `drop ${refused.path} (set by ${config.sources[refused.path]})`)
}

/**
 * Windows runners (native or WSL2) have no desktop, browser or code-server in
 * this version: refused with the reason, before anything is made.
 */
function checkDirectWindows(provider: string, config: Config, refuse: (message: string, hint: string) => CrabboxError): void {
  const staticHost = provider === 'ssh'
  for (const capability of ['desktop', 'browser'] as const) {
    if (!config[capability]) continue
    const reason = desktopRefusal('windows', capability, { windowsMode: config.windows.mode, staticHost })
    if (reason) throw refuse(reason, `drop --${capability}, or use a Linux runner for it`)
  }
  if (config.code)
    throw refuse('crabbox installs no code-server on Windows runners (code refused)', 'drop --code, or use a Linux runner for it')
}

/**
 * Direct mode joins a tailnet only on machines crabbox bootstraps, with the
 * user's own key from `tailscale.authKeyEnv`; `--network tailscale` needs a
 * lease that joins.
 */
function checkDirectTailscale(provider: string, config: Config, refuse: (message: string, hint: string) => CrabboxError): void {
  const { tailscale } = config
  if (config.network === 'tailscale' && !tailscale.enabled)
    throw refuse(
      'network tailscale needs a lease that joins your tailnet',
      'add --tailscale (with a key in CRABBOX_TAILSCALE_AUTH_KEY), or use --network auto or public',
    )
  if (!tailscale.enabled) return
  if (!INSTALLS_CAPABILITIES.has(provider))
    throw refuse(
      `the ${provider} provider cannot join a tailnet: crabbox installs Tailscale on hetzner and aws machines only`,
      provider === 'ssh' ? 'join the host to your tailnet yourself, then drop --tailscale' : 'drop --tailscale',
    )
  if (config.target !== 'linux') throw refuse('Tailscale leases are Linux only', 'drop --tailscale or use --target linux')
  if (!process.env[tailscale.authKeyEnv]?.trim())
    throw refuse(
      `--tailscale in direct mode needs your Tailscale auth key in ${tailscale.authKeyEnv}, which is not set`,
      `export ${tailscale.authKeyEnv}=tskey-auth-… (an ephemeral, pre-authorized key; tailscale.authKeyEnv names another variable)`,
    )
}

/** `capacity.*` keys each direct provider acts on; the others, when set, are refused as the broker refuses them. */
const DIRECT_CAPACITY: Readonly<Record<string, readonly string[]>> = {
  aws: ['market', 'fallback', 'regions', 'strategy'],
  hetzner: ['market'],
  azure: ['market', 'fallback'],
}

/** The first capacity setting someone made that a direct provider cannot honour, and why. */
function refusedCapacity(provider: string, config: Config): { path: string; reason: string } | undefined {
  for (const key of ['market', 'strategy', 'fallback', 'regions', 'availabilityZones', 'hints'] as const) {
    const path = `capacity.${key}`
    const value = config.capacity[key]
    if (config.sources[path] === undefined || value === false || (Array.isArray(value) && !value.length)) continue
    if (key === 'availabilityZones')
      return { path, reason: 'crabbox does not pin availability zones yet; set aws.subnetId to a subnet in the zone you want' }
    if (key === 'hints') return { path, reason: 'crabbox gives no capacity hints yet; set it to false or leave it out' }
    if (key === 'strategy' && provider === 'aws' && value === 'most-available') continue
    if (key === 'strategy' && provider === 'aws')
      return { path, reason: `${JSON.stringify(value)} is not a strategy: the one strategy is most-available` }
    if (key === 'market' && provider === 'hetzner' && value === 'spot') return { path, reason: 'Hetzner has no spot market; use on-demand' }
    if (!(DIRECT_CAPACITY[provider] ?? []).includes(key)) return { path, reason: `the ${provider} provider has no use for it` }
  }
  return undefined
}
