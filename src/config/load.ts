import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { CrabboxError } from '../errors.js'
import { describeIssue, dotted, readConfigFile, validateLayer } from './file.js'
import { userConfigLocation, type PlatformOptions } from '../paths.js'
import { type Config, defaultConfig, type FileConfig } from './schema.js'

export interface LoadConfigOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Flag values already parsed by the command; they win over everything. */
  flags?: Partial<Record<string, unknown>>
  warn?: (message: string) => void
  /** Which platform's user config folder to use (tests). */
  platform?: PlatformOptions
}

export interface LoadedConfig {
  config: Config
  /** Files that were read, lowest precedence first. */
  files: string[]
  /** Every file looked for, there or not (`files` are those that were there). */
  looked: string[]
  /** The file `config set-broker`, `login` and `logout` write. */
  userConfigPath: string
  /** Why that file: `CRABBOX_CONFIG`, `macos`, `macos-xdg` or `xdg` (see `userConfigLocation`). */
  userConfigSource: string
  /** Git top-level of `cwd`, or `cwd` when it is not in a git work tree. */
  repoRoot: string
}

/** Repo config file names at the git root; the later one wins. */
export const repoConfigNames = ['crabbox.yaml', '.crabbox.yaml'] as const

type Kind = 'string' | 'bool' | 'int' | 'csv' | 'ports'

/**
 * Every `CRABBOX_*` variable the loader reads, with the config path it sets.
 * When two names set one path, the earlier name wins (aliases come last).
 */
const envVariables: ReadonlyArray<readonly [name: string, path: string, kind: Kind]> = [
  ['CRABBOX_COORDINATOR', 'broker.url', 'string'],
  ['CRABBOX_COORDINATOR_TOKEN', 'broker.token', 'string'],
  ['CRABBOX_COORDINATOR_ADMIN_TOKEN', 'broker.adminToken', 'string'],
  ['CRABBOX_ADMIN_TOKEN', 'broker.adminToken', 'string'],
  ['CRABBOX_ACCESS_CLIENT_ID', 'broker.access.clientId', 'string'],
  ['CF_ACCESS_CLIENT_ID', 'broker.access.clientId', 'string'],
  ['CRABBOX_ACCESS_CLIENT_SECRET', 'broker.access.clientSecret', 'string'],
  ['CF_ACCESS_CLIENT_SECRET', 'broker.access.clientSecret', 'string'],
  ['CRABBOX_ACCESS_TOKEN', 'broker.access.token', 'string'],
  ['CF_ACCESS_TOKEN', 'broker.access.token', 'string'],
  ['CRABBOX_PROFILE', 'profile', 'string'],
  ['CRABBOX_PROVIDER', 'provider', 'string'],
  ['CRABBOX_TARGET', 'target', 'string'],
  ['CRABBOX_TARGET_OS', 'target', 'string'],
  ['CRABBOX_WINDOWS_MODE', 'windows.mode', 'string'],
  ['CRABBOX_DESKTOP', 'desktop', 'bool'],
  ['CRABBOX_BROWSER', 'browser', 'bool'],
  ['CRABBOX_CODE', 'code', 'bool'],
  ['CRABBOX_NETWORK', 'network', 'string'],
  ['CRABBOX_DEFAULT_CLASS', 'class', 'string'],
  ['CRABBOX_SERVER_TYPE', 'serverType', 'string'],
  ['CRABBOX_TTL', 'ttl', 'string'],
  ['CRABBOX_IDLE_TIMEOUT', 'idleTimeout', 'string'],
  ['CRABBOX_WORK_ROOT', 'workRoot', 'string'],
  ['CRABBOX_SSH_USER', 'ssh.user', 'string'],
  ['CRABBOX_SSH_KEY', 'ssh.key', 'string'],
  ['CRABBOX_SSH_PORT', 'ssh.port', 'string'],
  ['CRABBOX_SSH_FALLBACK_PORTS', 'ssh.fallbackPorts', 'ports'],
  ['CRABBOX_SYNC_EXCLUDE', 'sync.exclude', 'csv'],
  ['CRABBOX_SYNC_DELETE', 'sync.delete', 'bool'],
  ['CRABBOX_SYNC_CHECKSUM', 'sync.checksum', 'bool'],
  ['CRABBOX_SYNC_GIT_SEED', 'sync.gitSeed', 'bool'],
  ['CRABBOX_SYNC_FINGERPRINT', 'sync.fingerprint', 'bool'],
  ['CRABBOX_SYNC_BASE_REF', 'sync.baseRef', 'string'],
  ['CRABBOX_SYNC_TIMEOUT', 'sync.timeout', 'string'],
  ['CRABBOX_SYNC_WARN_FILES', 'sync.warnFiles', 'int'],
  ['CRABBOX_SYNC_WARN_BYTES', 'sync.warnBytes', 'int'],
  ['CRABBOX_SYNC_FAIL_FILES', 'sync.failFiles', 'int'],
  ['CRABBOX_SYNC_FAIL_BYTES', 'sync.failBytes', 'int'],
  ['CRABBOX_SYNC_ALLOW_LARGE', 'sync.allowLarge', 'bool'],
  ['CRABBOX_ENV_ALLOW', 'env.allow', 'csv'],
  ['CRABBOX_RESULTS_JUNIT', 'results.junit', 'csv'],
  ['CRABBOX_STATIC_ID', 'static.id', 'string'],
  ['CRABBOX_STATIC_NAME', 'static.name', 'string'],
  ['CRABBOX_STATIC_HOST', 'static.host', 'string'],
  ['CRABBOX_STATIC_USER', 'static.user', 'string'],
  ['CRABBOX_STATIC_PORT', 'static.port', 'string'],
  ['CRABBOX_STATIC_WORK_ROOT', 'static.workRoot', 'string'],
  ['CRABBOX_STATIC_DESKTOP', 'static.desktop', 'bool'],
  ['CRABBOX_STATIC_BROWSER', 'static.browser', 'bool'],
  ['CRABBOX_STATIC_CODE', 'static.code', 'bool'],
  ['CRABBOX_HETZNER_LOCATION', 'hetzner.location', 'string'],
  ['CRABBOX_HETZNER_IMAGE', 'hetzner.image', 'string'],
  ['CRABBOX_HETZNER_SSH_KEY', 'hetzner.sshKey', 'string'],
  ['CRABBOX_HETZNER_API_URL', 'hetzner.apiUrl', 'string'],
  ['CRABBOX_AWS_REGION', 'aws.region', 'string'],
  ['AWS_REGION', 'aws.region', 'string'],
  ['CRABBOX_AWS_AMI', 'aws.ami', 'string'],
  ['CRABBOX_AWS_SECURITY_GROUP_ID', 'aws.securityGroupId', 'string'],
  ['CRABBOX_AWS_SUBNET_ID', 'aws.subnetId', 'string'],
  ['CRABBOX_AWS_INSTANCE_PROFILE', 'aws.instanceProfile', 'string'],
  ['CRABBOX_AWS_ROOT_GB', 'aws.rootGB', 'int'],
  ['CRABBOX_AWS_SSH_CIDRS', 'aws.sshCIDRs', 'csv'],
  ['CRABBOX_AWS_ENDPOINT', 'aws.endpoint', 'string'],
  ['CRABBOX_AWS_MAC_HOST_ID', 'aws.macHostId', 'string'],
  ['CRABBOX_AZURE_SUBSCRIPTION_ID', 'azure.subscriptionId', 'string'],
  ['AZURE_SUBSCRIPTION_ID', 'azure.subscriptionId', 'string'],
  ['CRABBOX_AZURE_TENANT_ID', 'azure.tenantId', 'string'],
  ['AZURE_TENANT_ID', 'azure.tenantId', 'string'],
  ['CRABBOX_AZURE_CLIENT_ID', 'azure.clientId', 'string'],
  ['AZURE_CLIENT_ID', 'azure.clientId', 'string'],
  ['CRABBOX_AZURE_LOCATION', 'azure.location', 'string'],
  ['CRABBOX_AZURE_RESOURCE_GROUP', 'azure.resourceGroup', 'string'],
  ['CRABBOX_AZURE_IMAGE', 'azure.image', 'string'],
  ['CRABBOX_AZURE_VNET', 'azure.vnet', 'string'],
  ['CRABBOX_AZURE_SUBNET', 'azure.subnet', 'string'],
  ['CRABBOX_AZURE_NSG', 'azure.nsg', 'string'],
  ['CRABBOX_AZURE_SSH_CIDRS', 'azure.sshCIDRs', 'csv'],
  ['CRABBOX_AZURE_ENDPOINT', 'azure.endpoint', 'string'],
  ['CRABBOX_AZURE_LOGIN_ENDPOINT', 'azure.loginEndpoint', 'string'],
  ['CRABBOX_CAPACITY_MARKET', 'capacity.market', 'string'],
  ['CRABBOX_CAPACITY_STRATEGY', 'capacity.strategy', 'string'],
  ['CRABBOX_CAPACITY_FALLBACK', 'capacity.fallback', 'string'],
  ['CRABBOX_CAPACITY_HINTS', 'capacity.hints', 'bool'],
  ['CRABBOX_CAPACITY_REGIONS', 'capacity.regions', 'csv'],
  ['CRABBOX_CAPACITY_AVAILABILITY_ZONES', 'capacity.availabilityZones', 'csv'],
  ['CRABBOX_AGENT_IDLE_TIMEOUT', 'agent.idleTimeout', 'string'],
  ['CRABBOX_ACTIONS_REPO', 'actions.repo', 'string'],
  ['CRABBOX_ACTIONS_WORKFLOW', 'actions.workflow', 'string'],
  ['CRABBOX_ACTIONS_JOB', 'actions.job', 'string'],
  ['CRABBOX_ACTIONS_REF', 'actions.ref', 'string'],
  ['CRABBOX_ACTIONS_RUNNER_LABELS', 'actions.runnerLabels', 'csv'],
  ['CRABBOX_ACTIONS_RUNNER_VERSION', 'actions.runnerVersion', 'string'],
  ['CRABBOX_ACTIONS_EPHEMERAL', 'actions.ephemeral', 'bool'],
  ['CRABBOX_CACHE_PNPM', 'cache.pnpm', 'bool'],
  ['CRABBOX_CACHE_NPM', 'cache.npm', 'bool'],
  ['CRABBOX_CACHE_DOCKER', 'cache.docker', 'bool'],
  ['CRABBOX_CACHE_GIT', 'cache.git', 'bool'],
  ['CRABBOX_CACHE_MAX_GB', 'cache.maxGB', 'string'],
  ['CRABBOX_CACHE_PURGE_ON_RELEASE', 'cache.purgeOnRelease', 'bool'],
  ['CRABBOX_TAILSCALE', 'tailscale.enabled', 'bool'],
  ['CRABBOX_TAILSCALE_TAGS', 'tailscale.tags', 'csv'],
  ['CRABBOX_TAILSCALE_HOSTNAME_TEMPLATE', 'tailscale.hostnameTemplate', 'string'],
  ['CRABBOX_TAILSCALE_AUTH_KEY_ENV', 'tailscale.authKeyEnv', 'string'],
  ['CRABBOX_TAILSCALE_EXIT_NODE', 'tailscale.exitNode', 'string'],
  ['CRABBOX_TAILSCALE_EXIT_NODE_ALLOW_LAN_ACCESS', 'tailscale.exitNodeAllowLanAccess', 'bool'],
  ['CRABBOX_BLACKSMITH_ORG', 'blacksmith.org', 'string'],
  ['CRABBOX_BLACKSMITH_WORKFLOW', 'blacksmith.workflow', 'string'],
  ['CRABBOX_BLACKSMITH_JOB', 'blacksmith.job', 'string'],
  ['CRABBOX_BLACKSMITH_REF', 'blacksmith.ref', 'string'],
  ['CRABBOX_BLACKSMITH_IDLE_TIMEOUT', 'blacksmith.idleTimeout', 'string'],
  ['CRABBOX_BLACKSMITH_DEBUG', 'blacksmith.debug', 'bool'],
  ['CRABBOX_ISLO_BASE_URL', 'islo.baseUrl', 'string'],
  ['ISLO_BASE_URL', 'islo.baseUrl', 'string'],
  ['CRABBOX_ISLO_IMAGE', 'islo.image', 'string'],
  ['CRABBOX_ISLO_WORKDIR', 'islo.workdir', 'string'],
  ['CRABBOX_ISLO_GATEWAY_PROFILE', 'islo.gatewayProfile', 'string'],
  ['CRABBOX_ISLO_SNAPSHOT_NAME', 'islo.snapshotName', 'string'],
  ['CRABBOX_ISLO_VCPUS', 'islo.vcpus', 'int'],
  ['CRABBOX_ISLO_MEMORY_MB', 'islo.memoryMB', 'int'],
  ['CRABBOX_ISLO_DISK_GB', 'islo.diskGB', 'int'],
  ['CRABBOX_E2B_TEMPLATE', 'e2b.template', 'string'],
  ['CRABBOX_E2B_DOMAIN', 'e2b.domain', 'string'],
  ['CRABBOX_E2B_API_URL', 'e2b.apiUrl', 'string'],
  ['CRABBOX_E2B_SANDBOX_URL', 'e2b.sandboxUrl', 'string'],
  ['CRABBOX_E2B_WORKDIR', 'e2b.workdir', 'string'],
  ['CRABBOX_DAYTONA_API_URL', 'daytona.apiUrl', 'string'],
  ['DAYTONA_API_URL', 'daytona.apiUrl', 'string'],
  ['CRABBOX_DAYTONA_SNAPSHOT', 'daytona.snapshot', 'string'],
  ['DAYTONA_SNAPSHOT', 'daytona.snapshot', 'string'],
  ['CRABBOX_DAYTONA_TARGET', 'daytona.target', 'string'],
  ['DAYTONA_TARGET', 'daytona.target', 'string'],
  ['CRABBOX_DAYTONA_USER', 'daytona.user', 'string'],
  ['CRABBOX_DAYTONA_WORK_ROOT', 'daytona.workRoot', 'string'],
  ['CRABBOX_DAYTONA_SSH_GATEWAY_HOST', 'daytona.sshGatewayHost', 'string'],
  ['CRABBOX_DAYTONA_SSH_ACCESS_MINUTES', 'daytona.sshAccessMinutes', 'int'],
]

/**
 * Command flag names (camelCase or kebab-case, as oclif hands them over) and
 * the config path each overrides. Flags not listed here (`--json`, `--id` …)
 * are not config and are ignored; `undefined` values are ignored too, so
 * give such flags no default.
 */
export const flagPaths: Readonly<Record<string, string>> = {
  profile: 'profile',
  provider: 'provider',
  class: 'class',
  type: 'serverType',
  serverType: 'serverType',
  target: 'target',
  windowsMode: 'windows.mode',
  desktop: 'desktop',
  browser: 'browser',
  code: 'code',
  network: 'network',
  ttl: 'ttl',
  idleTimeout: 'idleTimeout',
  workRoot: 'workRoot',
  market: 'capacity.market',
  checksum: 'sync.checksum',
  junit: 'results.junit',
  staticHost: 'static.host',
  staticUser: 'static.user',
  staticPort: 'static.port',
  staticWorkRoot: 'static.workRoot',
  tailscale: 'tailscale.enabled',
  tailscaleTags: 'tailscale.tags',
  tailscaleHostnameTemplate: 'tailscale.hostnameTemplate',
  tailscaleAuthKeyEnv: 'tailscale.authKeyEnv',
  tailscaleExitNode: 'tailscale.exitNode',
  tailscaleExitNodeAllowLanAccess: 'tailscale.exitNodeAllowLanAccess',
}

const truthy = new Set(['1', 'true', 'yes', 'on'])
const falsy = new Set(['0', 'false', 'no', 'off'])

const setIn = (data: Record<string, unknown>, path: string, value: unknown) => {
  const keys = path.split('.')
  let node = data
  for (const key of keys.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>
  node[keys[keys.length - 1]] = value
}

function envLayer(env: NodeJS.ProcessEnv): { layer: FileConfig; names: Map<string, string> } {
  const data: Record<string, unknown> = {}
  const names = new Map<string, string>()
  const invalid = (name: string, expected: string) =>
    new CrabboxError(`invalid ${name}=${JSON.stringify(env[name])}: expected ${expected}`, {
      exit: 'usage',
      hint: `Fix or unset ${name} (see docs/config.md).`,
    })
  for (const [name, path, kind] of envVariables) {
    const raw = env[name]
    if (raw === undefined || raw === '' || names.has(path)) continue
    const text = raw.trim()
    let value: unknown = text
    if (kind === 'bool') {
      if (truthy.has(text.toLowerCase())) value = true
      else if (falsy.has(text.toLowerCase())) value = false
      else throw invalid(name, 'one of 1/true/yes/on or 0/false/no/off')
    } else if (kind === 'int') {
      if (!/^\d+$/.test(text)) throw invalid(name, 'a whole number')
      value = Number(text)
    } else if (kind === 'csv' || kind === 'ports') {
      value =
        kind === 'ports' && text === 'none'
          ? []
          : text
              .split(',')
              .map((item) => item.trim())
              .filter(Boolean)
    }
    names.set(path, name)
    setIn(data, path, value)
  }
  const layer = validateLayer(
    data,
    () => undefined,
    (path, issue) => {
      const name = names.get(dotted(path)) ?? names.get(dotted(path.slice(0, -1))) ?? dotted(path)
      throw invalid(name, describeIssue(issue).replace(/^expected /, ''))
    },
  )
  return { layer, names }
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase())

function flagLayer(flags: Partial<Record<string, unknown>>): { layer: FileConfig; names: Map<string, string> } {
  const data: Record<string, unknown> = {}
  const names = new Map<string, string>()
  for (const [name, value] of Object.entries(flags)) {
    const path = flagPaths[camel(name)]
    if (!path || value === undefined) continue
    names.set(path, `--${name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`)
    setIn(data, path, value)
  }
  const layer = validateLayer(
    data,
    () => undefined,
    (path, issue) => {
      const flag = names.get(dotted(path)) ?? names.get(dotted(path.slice(0, -1))) ?? dotted(path)
      throw new CrabboxError(`invalid ${flag}: ${describeIssue(issue)}`, {
        exit: 'usage',
        hint: `Run with --help to see what ${flag} accepts.`,
      })
    },
  )
  return { layer, names }
}

/** Sections whose fields override one by one. */
const sections = [
  'broker',
  'ssh',
  'env',
  'results',
  'static',
  'hetzner',
  'aws',
  'azure',
  'capacity',
  'agent',
  'windows',
  'actions',
  'cache',
  'tailscale',
  'blacksmith',
  'islo',
  'e2b',
  'daytona',
] as const
const providerAliases: Record<string, string> = { static: 'ssh', 'static-ssh': 'ssh', blacksmith: 'blacksmith-testbox' }

/**
 * Applies one validated layer on top of `config`, field by field. `source`
 * names the layer in `config.sources`, or `label(path)` names it per key (env
 * variables, flags).
 */
function applyLayer(config: Config, layer: FileConfig, label: (path: string) => string, explicit: { provider: boolean }): void {
  const set = (path: string, value: unknown) => {
    if (value === undefined) return
    const keys = path.split('.')
    let node = config as unknown as Record<string, unknown>
    for (const key of keys.slice(0, -1)) node = node[key] as Record<string, unknown>
    node[keys[keys.length - 1]] = value
    config.sources[path] = label(path)
  }
  set('profile', layer.profile)
  // `target` and `targetOS` are one setting; `target` wins within a layer.
  set('target', layer.target ?? layer.targetOS)
  set('desktop', layer.desktop)
  set('browser', layer.browser)
  set('code', layer.code)
  // `tailscale.network` sets `network`; the top-level key wins within a layer.
  set('network', layer.network ?? layer.tailscale?.network)
  set('class', layer.class)
  set('serverType', layer.serverType)
  set('workRoot', layer.workRoot)
  // Legacy keys first, so `broker.*` in the same layer wins.
  set('broker.url', layer.coordinator)
  set('broker.token', layer.coordinatorToken)
  for (const section of sections) {
    for (const [key, value] of Object.entries(layer[section] ?? {}))
      if (key !== 'access' && !(section === 'tailscale' && key === 'network')) set(`${section}.${key}`, value)
  }
  // Access credentials override one by one too (a file's service token, the environment's token).
  for (const [key, value] of Object.entries(layer.broker?.access ?? {})) {
    config.broker.access ??= {}
    set(`broker.access.${key}`, value)
  }
  set('ttl', layer.lease?.ttl ?? layer.ttl)
  set('idleTimeout', layer.lease?.idleTimeout ?? layer.idleTimeout)
  const provider = layer.provider ?? layer.broker?.provider
  if (provider !== undefined) {
    set('provider', providerAliases[provider] ?? provider)
    explicit.provider = true
  }
  const { exclude, excludes, ...sync } = layer.sync ?? {}
  for (const [key, value] of Object.entries(sync)) set(`sync.${key}`, value)
  const added = [...(exclude ?? []), ...(excludes ?? [])]
  if (added.length > 0) {
    config.sync.exclude = [...config.sync.exclude, ...added]
    config.sources['sync.exclude'] = config.sources['sync.exclude']
      ? `${config.sources['sync.exclude']} + ${label('sync.exclude')}`
      : label('sync.exclude')
  }
}

/**
 * The work tree root: the nearest folder upwards holding `.git` (a folder, or a file in
 * worktrees and submodules), else `cwd`. Looked up on disk rather than with `git rev-parse`,
 * which would cost every command a process spawn (≈ 10 ms) before it starts.
 */
export async function gitRoot(cwd: string): Promise<string> {
  return gitRootSearch(cwd).root
}

/** The git top-level of `cwd` (`cwd` itself outside git), and every `.git` looked for on the way up. */
export function gitRootSearch(cwd: string): { root: string; looked: string[] } {
  const looked: string[] = []
  // One stat per folder, made at once: an async check per level cost every command a trip
  // through the thread pool and back for each folder up to the root.
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    looked.push(join(dir, '.git'))
    if (existsSync(join(dir, '.git'))) return { root: dir, looked }
    if (dirname(dir) === dir) return { root: cwd, looked }
  }
}

/**
 * Merges every layer into one validated Config. Precedence, highest first:
 * flags > `CRABBOX_*` env > repo `.crabbox.yaml` then `crabbox.yaml` at the git
 * root > user config (`$XDG_CONFIG_HOME/crabbox/config.yaml`; on macOS
 * `~/Library/Application Support/crabbox/config.yaml`, over `~/.config/crabbox/config.yaml`)
 * > defaults. `CRABBOX_CONFIG` names the only file read: repo files are skipped too.
 * Scalars override field by field; `sync.exclude` appends.
 *
 * Provider: an explicit `provider` (or `broker.provider`) in any layer wins;
 * otherwise `broker` when a broker URL is configured (no provider is sent: the
 * broker uses its own default) and `local` (the embedded default) when not.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd()
  const env = options.env ?? process.env
  const warn = options.warn ?? (() => undefined)
  const config = defaultConfig()
  const explicit = { provider: false }
  const files: string[] = []
  const user = userConfigLocation(env, options.platform)
  const repoRoot = await gitRoot(cwd)

  const layers =
    user.source === 'CRABBOX_CONFIG'
      ? [user.path]
      : [...(user.alsoRead ? [user.alsoRead] : []), user.path, ...repoConfigNames.map((name) => join(repoRoot, name))]
  const read = await Promise.all([...new Set(layers)].map((path) => readConfigFile(path, warn)))
  for (const file of read) {
    if (!file) continue
    files.push(file.path)
    applyLayer(config, file.config, () => file.path, explicit)
  }

  const fromEnv = envLayer(env)
  applyLayer(config, fromEnv.layer, (path) => `env ${fromEnv.names.get(path) ?? 'CRABBOX_*'}`, explicit)
  const fromFlags = flagLayer(options.flags ?? {})
  applyLayer(config, fromFlags.layer, (path) => `flag ${fromFlags.names.get(path) ?? ''}`.trim(), explicit)

  if (!explicit.provider) {
    config.provider = config.broker.url ? 'broker' : 'local'
    config.sources.provider = config.broker.url ? 'default (the broker chooses)' : 'default (no broker)'
  }
  checkWindowsMode(config)
  checkTailscale(config)
  return { config, files, looked: layers, userConfigPath: user.path, userConfigSource: user.source, repoRoot }
}

/** LAN access is a setting of the exit node: without one it means nothing (usage error naming where it was set). */
function checkTailscale(config: Config): void {
  if (!config.tailscale.exitNodeAllowLanAccess || config.tailscale.exitNode) return
  throw new CrabboxError(
    `tailscale.exitNodeAllowLanAccess (${config.sources['tailscale.exitNodeAllowLanAccess']}) needs an exit node, and none is set`,
    { exit: 'usage', hint: 'pass --tailscale-exit-node NODE, or drop --tailscale-exit-node-allow-lan-access' },
  )
}

/** `windows.mode` other than `normal` means nothing without the windows target: a usage error naming both sources. */
function checkWindowsMode(config: Config): void {
  if (config.windows.mode === 'normal' || config.target === 'windows') return
  const from = (path: string) => config.sources[path] ?? 'default'
  throw new CrabboxError(
    `windows mode ${config.windows.mode} (${from('windows.mode')}) needs the windows target, but the target is ${config.target} (${from('target')})`,
    { exit: 'usage', hint: 'pass --target windows, or drop --windows-mode / windows.mode' },
  )
}
