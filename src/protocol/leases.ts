import * as v from 'valibot'
import { TailscaleMetadata } from './tailscale.js'

/**
 * Lease wire shapes: requests, records, shares and telemetry. Request schemas
 * are lenient (unknown keys ignored, out-of-range numbers clamped later) but
 * every value must have the right type: wrong types are a 400.
 */

const Text = (max = 256) => v.pipe(v.string(), v.maxLength(max, `at most ${max} characters`))
const Flag = v.optional(v.boolean())
const Seconds = v.optional(v.pipe(v.number('a number of seconds'), v.finite('a finite number')))

export const BrokerProviderName = v.picklist(['static', 'hetzner', 'aws', 'azure'], 'one of static, hetzner, aws, azure')
export const LeaseState = v.picklist(['provisioning', 'active', 'released', 'expired', 'failed'])
export type LeaseState = v.InferOutput<typeof LeaseState>
/** States that hold a machine (and count against caps). */
export const LIVE_LEASE_STATES: readonly LeaseState[] = ['provisioning', 'active']

export const ShareRole = v.picklist(['use', 'manage'], 'use or manage')
export type ShareRole = v.InferOutput<typeof ShareRole>

// ---- telemetry ------------------------------------------------------------

export const LeaseTelemetry = v.object({
  capturedAt: v.string(),
  source: v.optional(v.string()),
  load1: v.optional(v.number()),
  load5: v.optional(v.number()),
  load15: v.optional(v.number()),
  memoryUsedBytes: v.optional(v.number()),
  memoryTotalBytes: v.optional(v.number()),
  memoryPercent: v.optional(v.number()),
  diskUsedBytes: v.optional(v.number()),
  diskTotalBytes: v.optional(v.number()),
  diskPercent: v.optional(v.number()),
  uptimeSeconds: v.optional(v.number()),
})
export type LeaseTelemetry = v.InferOutput<typeof LeaseTelemetry>

const LOADS = ['load1', 'load5', 'load15'] as const
const PERCENTS = ['memoryPercent', 'diskPercent'] as const
const COUNTS = ['memoryUsedBytes', 'memoryTotalBytes', 'diskUsedBytes', 'diskTotalBytes', 'uptimeSeconds'] as const
export const TELEMETRY_SERIES_LIMIT = 60

/**
 * The telemetry sanitizer: bad fields are dropped, values capped; a sample
 * with no metric left is `undefined` (callers ignore it or answer 400).
 */
export function sanitizeTelemetry(input: unknown, now: Date): LeaseTelemetry | undefined {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return undefined
  const raw = input as Record<string, unknown>
  const parsed = typeof raw.capturedAt === 'string' ? Date.parse(raw.capturedAt) : Number.NaN
  const out: LeaseTelemetry = { capturedAt: new Date(Number.isFinite(parsed) ? parsed : now.getTime()).toISOString() }
  if (typeof raw.source === 'string' && raw.source.trim()) out.source = raw.source.trim().slice(0, 32)
  let metrics = 0
  const take = (key: keyof LeaseTelemetry, cap: number, integer: boolean) => {
    const value = raw[key]
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) return
    const capped = Math.min(value, cap)
    ;(out as Record<string, unknown>)[key] = integer ? Math.trunc(capped) : capped
    metrics++
  }
  for (const key of LOADS) take(key, 10_000, false)
  for (const key of PERCENTS) take(key, 100, false)
  for (const key of COUNTS) take(key, Number.MAX_SAFE_INTEGER, true)
  return metrics > 0 ? out : undefined
}

/** Dedupe by `capturedAt` (later wins), ascending, last 60. */
export function mergeTelemetrySeries(existing: readonly LeaseTelemetry[], incoming: readonly LeaseTelemetry[]): LeaseTelemetry[] {
  const byTime = new Map<string, LeaseTelemetry>()
  for (const sample of [...existing, ...incoming]) byTime.set(sample.capturedAt, sample)
  return [...byTime.values()]
    .sort((a, b) => (a.capturedAt < b.capturedAt ? -1 : a.capturedAt > b.capturedAt ? 1 : 0))
    .slice(-TELEMETRY_SERIES_LIMIT)
}

/** Telemetry as it arrives: any object; fields are sanitized, not rejected. */
export const TelemetryInput = v.optional(v.looseObject({}, 'an object of telemetry metrics'))

// ---- records ----------------------------------------------------------------

export const LeaseShare = v.object({
  users: v.optional(v.record(v.string(), ShareRole)),
  org: v.optional(ShareRole),
  updatedAt: v.optional(v.string()),
  updatedBy: v.optional(v.string()),
})
export type LeaseShare = v.InferOutput<typeof LeaseShare>

/** The lease as the broker returns it. Extra fields from newer brokers are kept. */
export const LeaseRecord = v.looseObject({
  id: v.string(),
  slug: v.string(),
  provider: v.string(),
  target: v.string(),
  windowsMode: v.optional(v.string()),
  /** How the lease asked to be reached (`auto`, `public`); absent when it did not say. */
  network: v.optional(v.string()),
  desktop: v.optional(v.boolean()),
  browser: v.optional(v.boolean()),
  code: v.optional(v.boolean()),
  /** Only when the lease asked for Tailscale; never holds the auth key. */
  tailscale: v.optional(TailscaleMetadata),
  cloudID: v.optional(v.string()),
  region: v.optional(v.string()),
  owner: v.string(),
  org: v.string(),
  share: v.optional(LeaseShare),
  profile: v.optional(v.string()),
  class: v.optional(v.string()),
  serverType: v.optional(v.string()),
  requestedServerType: v.optional(v.string()),
  market: v.optional(v.string()),
  serverID: v.optional(v.number()),
  serverName: v.optional(v.string()),
  providerKey: v.optional(v.string()),
  host: v.optional(v.string()),
  sshUser: v.optional(v.string()),
  sshPort: v.optional(v.string()),
  sshFallbackPorts: v.optional(v.array(v.string())),
  workRoot: v.optional(v.string()),
  /** The host's SSH keys (`type base64`) when the broker knows them (static pool entries with `hostKey`); the CLI pins them. */
  hostKeys: v.optional(v.array(v.string())),
  keep: v.boolean(),
  ttlSeconds: v.number(),
  idleTimeoutSeconds: v.number(),
  estimatedHourlyUSD: v.optional(v.number()),
  maxEstimatedUSD: v.optional(v.number()),
  state: v.string(),
  createdAt: v.string(),
  updatedAt: v.string(),
  lastTouchedAt: v.string(),
  expiresAt: v.string(),
  telemetry: v.optional(LeaseTelemetry),
  telemetryHistory: v.optional(v.array(LeaseTelemetry)),
  releasedAt: v.optional(v.string()),
  endedAt: v.optional(v.string()),
})
export type LeaseRecord = v.InferOutput<typeof LeaseRecord>

export const LeaseResponse = v.object({ lease: LeaseRecord })
export type LeaseResponse = v.InferOutput<typeof LeaseResponse>

export const LeaseListResponse = v.object({
  leases: v.array(LeaseRecord),
  /** Pass back as `cursor` for the next page; absent on the last page. */
  nextCursor: v.optional(v.string()),
})
export type LeaseListResponse = v.InferOutput<typeof LeaseListResponse>

export const ShareResponse = v.object({ leaseID: v.string(), share: LeaseShare })
export type ShareResponse = v.InferOutput<typeof ShareResponse>

// ---- requests ----------------------------------------------------------------

export const CapacityRequest = v.object({
  market: v.optional(v.picklist(['spot', 'on-demand'], 'spot or on-demand')),
  strategy: v.optional(Text(64)),
  fallback: v.optional(Text(64)),
  regions: v.optional(v.pipe(v.array(Text(64)), v.maxLength(32))),
  availabilityZones: v.optional(v.pipe(v.array(Text(64)), v.maxLength(32))),
  hints: Flag,
})

export const NetworkMode = v.picklist(['auto', 'tailscale', 'public'], 'auto, tailscale or public')
const Port = v.pipe(v.string(), v.regex(/^[1-9][0-9]{0,4}$/, 'a TCP port'))

/**
 * `POST /v1/leases`. Only `sshPublicKey` is required. Placement fields (where and
 * how the machine is made) are honoured by the chosen provider or refused with a
 * 400 naming the field; see worker/fleet/lease-ask.ts.
 */
export const LeaseRequest = v.object({
  leaseID: v.optional(Text(64)),
  slug: v.optional(Text(128)),
  requestedSlug: v.optional(Text(128)),
  provider: v.optional(Text(32)),
  target: v.optional(Text(32)),
  targetOS: v.optional(Text(32)),
  windowsMode: v.optional(Text(32)),
  desktop: Flag,
  browser: Flag,
  code: Flag,
  tailscale: Flag,
  profile: v.optional(Text(64)),
  class: v.optional(Text(64)),
  serverType: v.optional(Text(64)),
  serverTypeExplicit: Flag,
  location: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9-]{2,32}$/, 'a Hetzner location like fsn1'))),
  image: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'a Hetzner image name or ID like ubuntu-24.04'))),
  awsRegion: v.optional(Text(64)),
  awsAMI: v.optional(v.pipe(v.string(), v.regex(/^ami-[a-f0-9]{8,32}$/, 'an AMI ID like ami-0123456789abcdef0'))),
  awsSGID: v.optional(v.pipe(v.string(), v.regex(/^sg-[a-f0-9]{8,32}$/, 'a security group ID like sg-0123456789abcdef0'))),
  awsSubnetID: v.optional(v.pipe(v.string(), v.regex(/^subnet-[a-f0-9]{8,32}$/, 'a subnet ID like subnet-0123456789abcdef0'))),
  awsProfile: v.optional(Text(256)),
  awsRootGB: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(16_384))),
  awsSSHCIDRs: v.optional(v.pipe(v.array(Text(64)), v.maxLength(32))),
  capacity: v.optional(CapacityRequest),
  sshUser: v.optional(v.pipe(v.string(), v.regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'a user name like crabbox'))),
  sshPort: v.optional(Port),
  sshFallbackPorts: v.optional(v.pipe(v.array(Port), v.maxLength(8))),
  providerKey: v.optional(Text(128)),
  workRoot: v.optional(
    v.pipe(
      Text(1024),
      v.regex(/^\/[A-Za-z0-9._/-]*$/, 'an absolute path of A-Z a-z 0-9 . _ / -'),
      v.check((path) => !path.split('/').includes('..'), 'an absolute path without ..'),
    ),
  ),
  network: v.optional(NetworkMode),
  /** Tailscale asks (worker/fleet/tailscale.ts); honoured on Hetzner and AWS when the broker has Tailscale set up. */
  tailscaleTags: v.optional(v.pipe(v.array(Text(64)), v.maxLength(32))),
  tailscaleHostname: v.optional(Text(256)),
  tailscaleExitNode: v.optional(Text(256)),
  tailscaleExitNodeAllowLanAccess: Flag,
  // Reference fields this broker does not act on: read so that setting one is a 400 naming it, not ignored.
  awsMacHostID: v.optional(Text(64)),
  azureLocation: v.optional(Text(64)),
  azureImage: v.optional(Text(256)),
  ttlSeconds: Seconds,
  idleTimeoutSeconds: Seconds,
  keep: Flag,
  sshPublicKey: v.pipe(
    v.string('sshPublicKey is required'),
    v.trim(),
    v.nonEmpty('sshPublicKey is required'),
    v.maxLength(16_384, 'sshPublicKey is too long'),
  ),
})
export type LeaseRequest = v.InferOutput<typeof LeaseRequest>

export const HeartbeatRequest = v.object({
  idleTimeoutSeconds: Seconds,
  telemetry: TelemetryInput,
})
export type HeartbeatRequest = v.InferOutput<typeof HeartbeatRequest>

export const ReleaseRequest = v.object({ delete: Flag })
export type ReleaseRequest = v.InferOutput<typeof ReleaseRequest>

export const SharePutRequest = v.object({
  users: v.optional(
    v.pipe(
      v.record(v.pipe(v.string(), v.maxLength(320)), ShareRole),
      v.check((u) => Object.keys(u).length <= 100, 'at most 100 users'),
    ),
  ),
  org: v.optional(ShareRole),
})
export type SharePutRequest = v.InferOutput<typeof SharePutRequest>

export const ShareDeleteRequest = v.object({
  user: v.optional(v.pipe(v.string(), v.maxLength(320))),
  org: Flag,
})
export type ShareDeleteRequest = v.InferOutput<typeof ShareDeleteRequest>

const Limit = (max: number) =>
  v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d{1,6}$/, 'a positive whole number'),
      v.transform(Number),
      v.minValue(1, 'at least 1'),
      v.transform((n) => Math.min(n, max)),
    ),
  )

export const LEASE_LIST_DEFAULT_LIMIT = 100
export const LEASE_LIST_MAX_LIMIT = 500

/** `GET /v1/leases` and `GET /v1/admin/leases` query. */
export const LeaseListQuery = v.object({
  state: v.optional(LeaseState),
  owner: v.optional(Text(320)),
  org: v.optional(Text(128)),
  limit: Limit(LEASE_LIST_MAX_LIMIT),
  cursor: v.optional(v.pipe(v.string(), v.maxLength(256))),
})
export type LeaseListQuery = v.InferOutput<typeof LeaseListQuery>

/** A lease ID or slug in a path. */
export const LeaseRef = v.pipe(v.string(), v.minLength(1), v.maxLength(128, 'a lease ID or slug'))

export const PoolQuery = v.object({ provider: v.optional(BrokerProviderName) })

// ---- identity, pool ----------------------------------------------------------

export const WhoamiResponse = v.object({
  owner: v.string(),
  org: v.string(),
  auth: v.picklist(['bearer', 'github']),
  admin: v.optional(v.boolean()),
  login: v.optional(v.string()),
})
export type WhoamiResponse = v.InferOutput<typeof WhoamiResponse>

export const ProviderMachine = v.object({
  provider: v.string(),
  id: v.union([v.number(), v.string()]),
  cloudID: v.string(),
  region: v.optional(v.string()),
  name: v.string(),
  status: v.string(),
  serverType: v.string(),
  host: v.string(),
  labels: v.record(v.string(), v.string()),
})
export type ProviderMachine = v.InferOutput<typeof ProviderMachine>

export const PoolResponse = v.object({ machines: v.array(ProviderMachine) })
export type PoolResponse = v.InferOutput<typeof PoolResponse>

/**
 * A host's public key as OpenSSH writes it (`ssh-ed25519 AAAA…`, the key part of a
 * known_hosts line or a `ssh_host_*_key.pub` file); a trailing comment is dropped.
 */
export const HostKeyLine = v.pipe(
  v.string(),
  v.trim(),
  v.maxLength(16_384),
  v.regex(/^[a-z0-9][a-z0-9@.+-]{2,63} [A-Za-z0-9+/]+={0,2}(\s.*)?$/, 'an OpenSSH public key like "ssh-ed25519 AAAA…"'),
  v.transform((line) => line.split(/\s+/).slice(0, 2).join(' ')),
)

/** One host of the broker's static pool (`CRABBOX_STATIC_POOL`, a JSON array of these). */
export const StaticPoolHost = v.object({
  name: v.pipe(v.string(), v.nonEmpty(), v.maxLength(128)),
  host: v.pipe(v.string(), v.nonEmpty(), v.maxLength(256)),
  port: v.optional(v.pipe(v.union([v.number(), v.string()]), v.transform(String), v.regex(/^[1-9][0-9]{0,4}$/)), '22'),
  user: v.optional(v.pipe(v.string(), v.nonEmpty()), 'crabbox'),
  workRoot: v.optional(v.pipe(v.string(), v.nonEmpty()), '/work/crabbox'),
  fallbackPorts: v.optional(v.array(v.pipe(v.union([v.number(), v.string()]), v.transform(String))), []),
  /** The host's SSH key (or keys), handed to lessees to pin; without them the CLI trusts the first key it sees. */
  hostKey: v.optional(HostKeyLine),
  hostKeys: v.optional(v.pipe(v.array(HostKeyLine), v.maxLength(16))),
  /** What the operator set up on the host (see docs/desktop.md for the prerequisites); leases asking for one get only such a host. */
  desktop: v.optional(v.boolean(), false),
  browser: v.optional(v.boolean(), false),
  code: v.optional(v.boolean(), false),
})
export type StaticPoolHost = v.InferOutput<typeof StaticPoolHost>
export const StaticPool = v.array(StaticPoolHost)
