import * as v from 'valibot'

/**
 * The one validated shape of crabbox configuration. Files, `CRABBOX_*` env and
 * flags are all merged into this (see `load.ts`); keys and defaults are those
 * of the crabbox config file (docs/config.md). Durations are kept as strings
 * like `90m` and parsed where they are used (`parseDuration`).
 */
export const DURATION_FORM = 'a duration like 30s, 15m or 2h'
// A bare YAML number is read as seconds, like `parseDuration` does.
const Duration = v.pipe(v.union([v.string(), v.number()], DURATION_FORM), v.transform(String), v.check(isDuration, DURATION_FORM))
/** The longest lease lifetime or idle timeout crabbox accepts; the broker caps leases at the same 24 hours. */
export const LEASE_DURATION_MAX = '24h'
export const LEASE_DURATION_FORM = `a duration with a unit, more than 0 and at most ${LEASE_DURATION_MAX} (e.g. 30m, 2h)`
// Lease lifetimes need a unit: `ttl: 10` is more likely a mistake than ten seconds.
const LeaseDuration = v.pipe(
  v.union([v.string(), v.number()], LEASE_DURATION_FORM),
  v.transform(String),
  v.check(isLeaseDuration, LEASE_DURATION_FORM),
)
const Port = v.pipe(v.union([v.string(), v.number()], 'a TCP port number'), v.transform(String), v.regex(/^\d{1,5}$/, 'a TCP port number'))
const Bool = v.boolean('true or false')
const Count = v.pipe(v.number('a whole number'), v.integer('a whole number'), v.minValue(0, 'a number of at least 0'))

import { TARGET_ALIASES, WINDOWS_MODE_ALIASES } from '../protocol/targets.js'

export { TARGET_ALIASES, WINDOWS_MODE_ALIASES }
export const TARGET_FORM = 'linux, macos or windows (aliases ubuntu, mac, darwin, osx, win)'
export const WINDOWS_MODE_FORM = 'normal or wsl2 (aliases native, powershell, ps, wsl)'
export const PROFILE_FORM = 'a profile name of 1 to 64 characters without spaces (e.g. default, ci-check)'
export const PROFILE_PATTERN = /^[^\s\p{Cc}]{1,64}$/u
export const NETWORK_MODES = ['auto', 'tailscale', 'public'] as const
export const MARKETS = ['spot', 'on-demand'] as const

/** A name looked up case-insensitively in an alias table, giving the canonical name. */
const Aliased = <T extends string>(aliases: Readonly<Record<string, T>>, form: string) =>
  v.pipe(
    v.string(form),
    v.transform((text) => text.trim().toLowerCase()),
    v.check((text) => Object.hasOwn(aliases, text), form),
    v.transform((text) => aliases[text]),
  )
const Target = Aliased(TARGET_ALIASES, TARGET_FORM)
const WindowsMode = Aliased(WINDOWS_MODE_ALIASES, WINDOWS_MODE_FORM)

/** Cloudflare Access credentials for a broker behind Access: a service token (ID and secret) and/or a token. */
export const AccessConfig = v.strictObject({
  clientId: v.optional(v.string()),
  clientSecret: v.optional(v.string()),
  token: v.optional(v.string()),
})

export const BrokerConfig = v.strictObject({
  url: v.optional(v.pipe(v.string(), v.url('an http(s) URL'))),
  token: v.optional(v.string()),
  adminToken: v.optional(v.string()),
  provider: v.optional(v.string()),
  access: v.optional(AccessConfig),
})

export const SshConfig = v.strictObject({
  user: v.optional(v.string()),
  key: v.optional(v.string()),
  port: v.optional(Port),
  fallbackPorts: v.optional(v.array(Port)),
})

export const SyncConfig = v.strictObject({
  exclude: v.optional(v.array(v.string())),
  excludes: v.optional(v.array(v.string())),
  delete: v.optional(Bool),
  checksum: v.optional(Bool),
  gitSeed: v.optional(Bool),
  fingerprint: v.optional(Bool),
  baseRef: v.optional(v.string()),
  timeout: v.optional(Duration),
  warnFiles: v.optional(Count),
  warnBytes: v.optional(Count),
  failFiles: v.optional(Count),
  failBytes: v.optional(Count),
  allowLarge: v.optional(Bool),
})

/** `results.junit`: a list, or one comma-separated string (as `--junit` gives it). */
export const ResultsConfig = v.strictObject({
  junit: v.optional(
    v.union([
      v.array(v.string()),
      v.pipe(
        v.string(),
        v.transform((text) =>
          text
            .split(',')
            .map((item) => item.trim())
            .filter(Boolean),
        ),
      ),
    ]),
  ),
})

export const StaticConfig = v.strictObject({
  id: v.optional(v.string()),
  name: v.optional(v.string()),
  host: v.optional(v.string()),
  user: v.optional(v.string()),
  port: v.optional(Port),
  workRoot: v.optional(v.string()),
  /** What the operator set up on the host (docs/desktop.md): leases asking for it are accepted, and `desktop doctor` checks it. */
  desktop: v.optional(Bool),
  browser: v.optional(Bool),
  code: v.optional(Bool),
})

export const EnvConfig = v.strictObject({
  allow: v.optional(v.array(v.string())),
})

export const LeaseConfig = v.strictObject({
  ttl: v.optional(LeaseDuration),
  idleTimeout: v.optional(LeaseDuration),
})

export const HetznerConfig = v.strictObject({
  location: v.optional(v.string()),
  image: v.optional(v.string()),
  sshKey: v.optional(v.string()),
  apiUrl: v.optional(v.string()),
})

export const AwsConfig = v.strictObject({
  region: v.optional(v.string()),
  ami: v.optional(v.string()),
  securityGroupId: v.optional(v.string()),
  subnetId: v.optional(v.string()),
  instanceProfile: v.optional(v.string()),
  rootGB: v.optional(Count),
  sshCIDRs: v.optional(v.array(v.string())),
  endpoint: v.optional(v.string()),
  macHostId: v.optional(v.string()),
})

export const AzureConfig = v.strictObject({
  subscriptionId: v.optional(v.string()),
  tenantId: v.optional(v.string()),
  clientId: v.optional(v.string()),
  location: v.optional(v.string()),
  resourceGroup: v.optional(v.string()),
  image: v.optional(v.string()),
  vnet: v.optional(v.string()),
  subnet: v.optional(v.string()),
  nsg: v.optional(v.string()),
  sshCIDRs: v.optional(v.array(v.string())),
  endpoint: v.optional(v.string()),
  loginEndpoint: v.optional(v.string()),
})

/** `blacksmith.*`: the Blacksmith Testbox workflow the `blacksmith` CLI warms up. */
export const BlacksmithConfig = v.strictObject({
  org: v.optional(v.string()),
  workflow: v.optional(v.string()),
  job: v.optional(v.string()),
  ref: v.optional(v.string()),
  idleTimeout: v.optional(Duration),
  debug: v.optional(Bool),
})

/** `islo.*`: the Islo sandbox the `islo` provider makes (the API key comes from the environment only). */
export const IsloConfig = v.strictObject({
  baseUrl: v.optional(v.string()),
  image: v.optional(v.string()),
  workdir: v.optional(v.string()),
  gatewayProfile: v.optional(v.string()),
  snapshotName: v.optional(v.string()),
  vcpus: v.optional(Count),
  memoryMB: v.optional(Count),
  diskGB: v.optional(Count),
})

/** `e2b.*`: the E2B sandbox template and where the E2B API lives (the key is `E2B_API_KEY`). */
export const E2bConfig = v.strictObject({
  template: v.optional(v.string()),
  domain: v.optional(v.string()),
  apiUrl: v.optional(v.string()),
  sandboxUrl: v.optional(v.string()),
  workdir: v.optional(v.string()),
})

/** `daytona.*`: where Daytona sandboxes come from (the API key itself is only ever read from the environment). */
export const DaytonaConfig = v.strictObject({
  apiUrl: v.optional(v.string()),
  snapshot: v.optional(v.string()),
  target: v.optional(v.string()),
  user: v.optional(v.string()),
  workRoot: v.optional(v.string()),
  sshGatewayHost: v.optional(v.string()),
  sshAccessMinutes: v.optional(Count),
})

export const CapacityConfig = v.strictObject({
  market: v.optional(v.picklist(MARKETS, 'spot or on-demand')),
  strategy: v.optional(v.string()),
  fallback: v.optional(v.string()),
  regions: v.optional(v.array(v.string())),
  availabilityZones: v.optional(v.array(v.string())),
  hints: v.optional(Bool),
})

export const WindowsConfig = v.strictObject({
  mode: v.optional(WindowsMode),
})

const TailscaleTag = v.pipe(
  v.string(),
  v.trim(),
  v.toLowerCase(),
  v.regex(/^tag:[a-z0-9_-]{1,63}$/, 'tags like tag:crabbox (tag:[a-z0-9_-]{1,63})'),
)

/** `tailscale.*`: a lease that joins the tailnet (docs/network.md). `network` here sets the top-level `network`. */
export const TailscaleConfig = v.strictObject({
  enabled: v.optional(Bool),
  network: v.optional(v.picklist(NETWORK_MODES, 'auto, tailscale or public')),
  tags: v.optional(
    v.union([
      v.array(TailscaleTag),
      v.pipe(
        v.string(),
        v.transform((text) =>
          text
            .split(',')
            .map((item) => item.trim())
            .filter(Boolean),
        ),
        v.array(TailscaleTag),
      ),
    ]),
  ),
  hostnameTemplate: v.optional(v.pipe(v.string(), v.trim(), v.nonEmpty('a hostname template like crabbox-{slug}'))),
  authKeyEnv: v.optional(v.pipe(v.string(), v.trim(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name'))),
  exitNode: v.optional(v.pipe(v.string(), v.trim())),
  exitNodeAllowLanAccess: v.optional(Bool),
})

export const AgentConfig = v.strictObject({
  /** How long the connection agent keeps an unused target's connection. */
  idleTimeout: v.optional(Duration),
})

/** `actions.*`: the repository workflow that hydrates a lease as a GitHub Actions job (docs/actions.md). */
export const ActionsConfig = v.strictObject({
  repo: v.optional(v.string()),
  workflow: v.optional(v.string()),
  job: v.optional(v.string()),
  ref: v.optional(v.string()),
  /** `key=value` inputs sent with every dispatch (`-f` adds to them and wins). */
  fields: v.optional(v.array(v.string())),
  runnerLabels: v.optional(v.array(v.string())),
  runnerVersion: v.optional(v.string()),
  ephemeral: v.optional(Bool),
})

const Gigabytes = v.pipe(
  v.union([v.number(), v.pipe(v.string(), v.transform(Number))], 'a number of gigabytes'),
  v.number('a number of gigabytes'),
  v.check((n) => Number.isFinite(n) && n >= 0, 'a number of gigabytes of at least 0'),
)

/** `cache.*`: the package caches under /var/cache/crabbox on the runner (docs/commands/cache.md). */
export const CacheConfig = v.strictObject({
  pnpm: v.optional(Bool),
  npm: v.optional(Bool),
  docker: v.optional(Bool),
  git: v.optional(Bool),
  maxGB: v.optional(Gigabytes),
  purgeOnRelease: v.optional(Bool),
})

/** What one config file may contain. Unknown keys are reported as warnings, not errors. */
export const FileConfig = v.strictObject({
  profile: v.optional(v.pipe(v.string(PROFILE_FORM), v.trim(), v.regex(PROFILE_PATTERN, PROFILE_FORM))),
  provider: v.optional(v.string()),
  target: v.optional(Target),
  targetOS: v.optional(Target),
  windows: v.optional(WindowsConfig),
  desktop: v.optional(Bool),
  browser: v.optional(Bool),
  code: v.optional(Bool),
  network: v.optional(v.picklist(NETWORK_MODES, 'auto, tailscale or public')),
  class: v.optional(v.string()),
  serverType: v.optional(v.string()),
  broker: v.optional(BrokerConfig),
  coordinator: v.optional(v.string()),
  coordinatorToken: v.optional(v.string()),
  ssh: v.optional(SshConfig),
  workRoot: v.optional(v.string()),
  ttl: v.optional(LeaseDuration),
  idleTimeout: v.optional(LeaseDuration),
  lease: v.optional(LeaseConfig),
  sync: v.optional(SyncConfig),
  env: v.optional(EnvConfig),
  results: v.optional(ResultsConfig),
  static: v.optional(StaticConfig),
  hetzner: v.optional(HetznerConfig),
  aws: v.optional(AwsConfig),
  azure: v.optional(AzureConfig),
  capacity: v.optional(CapacityConfig),
  agent: v.optional(AgentConfig),
  actions: v.optional(ActionsConfig),
  cache: v.optional(CacheConfig),
  tailscale: v.optional(TailscaleConfig),
  blacksmith: v.optional(BlacksmithConfig),
  islo: v.optional(IsloConfig),
  e2b: v.optional(E2bConfig),
  daytona: v.optional(DaytonaConfig),
})
export type FileConfig = v.InferOutput<typeof FileConfig>

/** The merged, defaulted configuration every service receives. */
export interface Config {
  profile: string
  /** `local` when no broker and no provider are configured (the embedded default). */
  provider: string
  target: 'linux' | 'macos' | 'windows'
  /** Only meaningful with the windows target. */
  windows: { mode: 'normal' | 'wsl2' }
  /** Capabilities the lease asks for (a desktop, a browser, code-server). */
  desktop: boolean
  browser: boolean
  code: boolean
  /** How the runner is reached: auto, tailscale or public. */
  network: (typeof NETWORK_MODES)[number]
  class: string
  serverType?: string
  broker: {
    url?: string
    token?: string
    adminToken?: string
    provider?: string
    /** Cloudflare Access credentials; absent when none is configured. */
    access?: { clientId?: string; clientSecret?: string; token?: string }
  }
  ssh: { user: string; key?: string; port: string; fallbackPorts: string[] }
  workRoot: string
  ttl: string
  idleTimeout: string
  sync: {
    exclude: string[]
    delete: boolean
    checksum: boolean
    gitSeed: boolean
    fingerprint: boolean
    baseRef?: string
    timeout: string
    warnFiles: number
    warnBytes: number
    failFiles: number
    failBytes: number
    allowLarge: boolean
  }
  env: { allow: string[] }
  /** Remote JUnit XML files (paths or globs relative to the workdir) `run` reads after the command. */
  results: { junit: string[] }
  static: {
    id?: string
    name?: string
    host?: string
    user?: string
    port?: string
    workRoot?: string
    desktop?: boolean
    browser?: boolean
    code?: boolean
  }
  hetzner: { location: string; image: string; sshKey?: string; apiUrl?: string }
  aws: {
    region: string
    ami?: string
    securityGroupId?: string
    subnetId?: string
    instanceProfile?: string
    rootGB: number
    sshCIDRs: string[]
    endpoint?: string
    /** macOS leases: the dedicated host (yours) `mac2.metal` instances are placed on. */
    macHostId?: string
  }
  azure: {
    subscriptionId?: string
    tenantId?: string
    clientId?: string
    location: string
    resourceGroup: string
    image: string
    vnet: string
    subnet: string
    nsg: string
    sshCIDRs: string[]
    /** ARM and login endpoints (tests point them at a fake). */
    endpoint?: string
    loginEndpoint?: string
  }
  capacity: {
    market: 'spot' | 'on-demand'
    strategy: string
    fallback: string
    regions: string[]
    availabilityZones: string[]
    hints: boolean
  }
  agent: { idleTimeout: string }
  /** The GitHub Actions hydration workflow (`actions hydrate`, `warmup --actions-runner`). */
  actions: {
    repo?: string
    workflow: string
    job?: string
    ref?: string
    fields: string[]
    runnerLabels: string[]
    runnerVersion: string
    ephemeral: boolean
  }
  /** Which runner caches crabbox keeps, and their size limit. */
  cache: { pnpm: boolean; npm: boolean; docker: boolean; git: boolean; maxGB: number; purgeOnRelease: boolean }
  /** Tailscale for new leases; the auth key itself is read from the variable `authKeyEnv` names (direct mode only). */
  tailscale: {
    enabled: boolean
    tags: string[]
    hostnameTemplate: string
    authKeyEnv: string
    exitNode?: string
    exitNodeAllowLanAccess: boolean
  }
  /** The `blacksmith-testbox` provider; `idleTimeout` falls back to the lease's. */
  blacksmith: { org?: string; workflow?: string; job?: string; ref?: string; idleTimeout?: string; debug: boolean }
  /** The `islo` provider's sandbox. */
  islo: {
    baseUrl: string
    image: string
    workdir: string
    gatewayProfile?: string
    snapshotName?: string
    vcpus: number
    memoryMB: number
    diskGB: number
  }
  /** The `e2b` provider: sandbox template, API domain or URLs, and the work folder inside the sandbox. */
  e2b: { template: string; domain?: string; apiUrl?: string; sandboxUrl?: string; workdir: string }
  /** The `daytona` provider: API endpoint, snapshot, region target, sandbox user, the work root inside it, and SSH access. */
  daytona: {
    apiUrl: string
    snapshot?: string
    target?: string
    user?: string
    workRoot: string
    /** The SSH gateway when Daytona's answer names none. */
    sshGatewayHost: string
    /** How long an SSH access token crabbox asks for lasts. */
    sshAccessMinutes: number
  }
  /** Where each top-level value came from, for `config show`. */
  sources: Record<string, string>
}

const GiB = 1024 ** 3

export function defaultConfig(): Config {
  return {
    profile: 'default',
    provider: 'local',
    target: 'linux',
    windows: { mode: 'normal' },
    desktop: false,
    browser: false,
    code: false,
    network: 'auto',
    class: 'beast',
    broker: {},
    ssh: { user: 'crabbox', port: '2222', fallbackPorts: ['22'] },
    workRoot: '/work/crabbox',
    ttl: '90m',
    idleTimeout: '30m',
    sync: {
      exclude: [],
      delete: true,
      checksum: false,
      gitSeed: true,
      fingerprint: true,
      timeout: '15m',
      warnFiles: 50_000,
      warnBytes: 5 * GiB,
      failFiles: 150_000,
      failBytes: 20 * GiB,
      allowLarge: false,
    },
    env: { allow: ['CI', 'NODE_OPTIONS'] },
    results: { junit: [] },
    static: {},
    hetzner: { location: 'fsn1', image: 'ubuntu-24.04' },
    aws: { region: 'eu-west-1', rootGB: 400, sshCIDRs: [] },
    azure: {
      location: 'eastus',
      resourceGroup: 'crabbox-leases',
      image: 'Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest',
      vnet: 'crabbox-vnet',
      subnet: 'crabbox-subnet',
      nsg: 'crabbox-nsg',
      sshCIDRs: [],
    },
    capacity: {
      market: 'spot',
      strategy: 'most-available',
      fallback: 'on-demand-after-120s',
      regions: [],
      availabilityZones: [],
      hints: true,
    },
    agent: { idleTimeout: '10m' },
    actions: { workflow: 'crabbox.yml', fields: [], runnerLabels: [], runnerVersion: 'latest', ephemeral: true },
    cache: { pnpm: true, npm: true, docker: true, git: true, maxGB: 80, purgeOnRelease: false },
    tailscale: {
      enabled: false,
      tags: ['tag:crabbox'],
      hostnameTemplate: 'crabbox-{slug}',
      authKeyEnv: 'CRABBOX_TAILSCALE_AUTH_KEY',
      exitNodeAllowLanAccess: false,
    },
    blacksmith: { debug: false },
    islo: {
      baseUrl: 'https://api.islo.dev',
      image: 'docker.io/library/ubuntu:24.04',
      workdir: 'crabbox',
      vcpus: 2,
      memoryMB: 4096,
      diskGB: 20,
    },
    e2b: { template: 'base', workdir: '/home/user/crabbox' },
    daytona: {
      apiUrl: 'https://app.daytona.io/api',
      workRoot: '/home/daytona/crabbox',
      sshGatewayHost: 'ssh.app.daytona.io',
      sshAccessMinutes: 30,
    },
    sources: {},
  }
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

const DURATION_PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/

/**
 * The one duration parser (config values and duration flags): `90m` → 5_400_000.
 * A bare number is seconds. Throws on anything else.
 */
export function parseDuration(text: string): number {
  const match = DURATION_PATTERN.exec(text.trim())
  if (!match) throw new Error(`invalid duration ${JSON.stringify(text)}: use a number with ms, s, m, h or d`)
  return Math.round(Number(match[1]) * units[match[2] ?? 's'])
}

function isDuration(text: string): boolean {
  try {
    parseDuration(text)
    return true
  } catch {
    return false
  }
}

/**
 * A lease lifetime or idle timeout (`ttl`, `idleTimeout`, `--ttl`, `--idle-timeout`):
 * like `parseDuration`, but the unit is required, 0 is refused and
 * `LEASE_DURATION_MAX` is the most. Throws with the reason.
 */
export function parseLeaseDuration(text: string): number {
  const match = DURATION_PATTERN.exec(text.trim())
  if (!match) throw new Error(`expected ${LEASE_DURATION_FORM}, got ${JSON.stringify(text)}`)
  if (match[2] === undefined) throw new Error(`${JSON.stringify(text)} has no unit: write ${match[1]}s, ${match[1]}m or ${match[1]}h`)
  const ms = parseDuration(text)
  if (ms <= 0) throw new Error(`${JSON.stringify(text)} is not a lease duration: it must be more than 0`)
  if (ms > parseDuration(LEASE_DURATION_MAX)) throw new Error(`${JSON.stringify(text)} is too long: the most is ${LEASE_DURATION_MAX}`)
  return ms
}

function isLeaseDuration(text: string): boolean {
  try {
    parseLeaseDuration(text)
    return true
  } catch {
    return false
  }
}
