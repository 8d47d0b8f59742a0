import { candidateTypes } from '../../src/cloud/classes.js'
import { MAC_INSTANCE_TYPE, MACOS_DEFAULTS } from '../../src/cloud/macos-bootstrap.js'
import { BROKER_MACOS_CLOUDS, BROKER_WINDOWS_CLOUDS } from '../../src/cloud/targets.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { defaultSlug, isLeaseId, newLeaseId, normalizeSlug, providerResourceName, slugCandidates } from '../../src/protocol/ids.js'
import type { LeaseRecord, LeaseRequest } from '../../src/protocol/leases.js'
import { canSeeLease, withOwnerNamespace, type Identity } from '../auth/identity.js'
import { setting } from '../env.js'
import { windowsBootstrap } from '../providers/cloud.js'
import type { BrokerProvider, Machine, MachineRequest } from '../providers/types.js'
import { costLimits, enforceCaps, hourlyRate, maxActiveLeasesPerCredential, maxEstimatedUSD, monthOf } from './caps.js'
import type { FleetDeps } from './deps.js'
import { checkLeaseAsk, type LeaseAsk } from './lease-ask.js'
import {
  clampSeconds,
  computeExpiresAt,
  DEFAULT_IDLE_SECONDS,
  DEFAULT_TTL_SECONDS,
  getLeaseRecord,
  inflightFor,
  insertLease,
  LIVE_LEASE_SQL,
  minLeaseSeconds,
  queueCleanup,
  saveRecord,
  type MachineRef,
} from './lease-store.js'
import type { FleetStorage } from './storage.js'
import { mintTailscaleKey, planTailscale, tailscaleHostname } from './tailscale.js'

/**
 * Lease creation, idempotent on the client's lease ID. The caps check and the
 * `provisioning` reservation happen in one synchronous transaction (exact under
 * any concurrency); the provider call happens outside any transaction; a failure
 * removes the reservation, or, when the outcome is unknown, leaves it for the
 * alarm to clean up.
 */

export interface CreateResult {
  lease: LeaseRecord
  /** False when an earlier create with the same lease ID already made it. */
  created: boolean
}

/** What a create asks of the provider beyond the lease record (never stored: the key is the caller's). */
type ProvisionAsk = Pick<MachineRequest, 'sshPublicKey' | 'serverType' | 'serverTypeExplicit' | 'market' | 'placement' | 'bootstrap'>

/** Everything a new record is built from, settled before the reservation transaction. */
interface LeasePlan {
  leaseId: string
  identity: Identity
  request: LeaseRequest
  provider: string
  ask: LeaseAsk
  /** Tailscale metadata without the hostname (it needs the slug); undefined when not asked. */
  tailscale?: Omit<NonNullable<LeaseRecord['tailscale']>, 'hostname'>
  leaseClass: string
  serverType: string
  ttlSeconds: number
  idleTimeoutSeconds: number
  hourlyUSD: number
}

function defaultProvider(deps: FleetDeps): string {
  return setting(deps.env, 'CRABBOX_DEFAULT_PROVIDER') ?? (setting(deps.env, 'CRABBOX_STATIC_POOL') ? 'static' : 'hetzner')
}

/** The caller's own lease (same owner and org, same namespace); admins own nothing they did not create. */
function ownedBy(lease: LeaseRecord, identity: Identity): boolean {
  return canSeeLease(lease, { ...identity, admin: false }) && lease.owner === identity.owner && lease.org === identity.org
}

function provisionAsk(request: LeaseRequest): ProvisionAsk {
  return {
    sshPublicKey: request.sshPublicKey,
    serverType: request.serverType,
    serverTypeExplicit: request.serverTypeExplicit,
    market: request.capacity?.market,
    placement: {
      location: request.location ?? request.azureLocation,
      image: request.image ?? request.azureImage,
      region: request.awsRegion,
      regions: request.capacity?.regions?.length ? request.capacity.regions : undefined,
      ami: request.awsAMI,
      securityGroupId: request.awsSGID,
      subnetId: request.awsSubnetID,
      rootGB: request.awsRootGB,
      fallback: request.capacity?.fallback,
      macHostId: request.awsMacHostID,
    },
    bootstrap: {
      sshUser: request.sshUser,
      sshPort: request.sshPort,
      sshFallbackPorts: request.sshFallbackPorts,
      workRoot: request.workRoot,
      ...(request.desktop ? { desktop: true } : {}),
      ...(request.browser ? { browser: true } : {}),
      ...(request.code ? { code: true } : {}),
    },
  }
}

/**
 * The server type the record shows: the one asked for, else the class's first
 * candidate on a cloud, `ssh` on the static pool, the class name elsewhere. The
 * provider itself gets a type only when one was asked for. A macOS lease gets `mac2.metal`.
 */
function recordServerType(provider: string, leaseClass: string, requested: string | undefined, target: string): string {
  if (requested) return requested
  if (target === 'macos' && BROKER_MACOS_CLOUDS.has(provider)) return MAC_INSTANCE_TYPE
  if (provider === 'hetzner' || provider === 'aws') return candidateTypes(provider, leaseClass)[0]
  if (provider === 'static') return 'ssh'
  return leaseClass
}

/** Picks the first free slug among the base and its suffixed candidates (same owner, org and namespace, live). */
function allocateSlug(storage: FleetStorage, identity: Identity, base: string, leaseId: string, now: Date): string {
  for (const candidate of slugCandidates(base, leaseId)) {
    const taken = storage.one(
      `SELECT 1 AS taken FROM leases WHERE slug = ? AND owner = ? AND org = ? AND claimed = ? AND ${LIVE_LEASE_SQL} AND expires_at > ? LIMIT 1`,
      candidate,
      identity.owner,
      identity.org,
      identity.claimed ? 1 : 0,
      now.toISOString(),
    )
    if (!taken) return candidate
  }
  throw new ApiError(409, ErrorCode.slugUnavailable, `could not allocate a slug for ${leaseId}; request a different slug`)
}

/** What the client asked the machine to offer. */
function requestedFeatures(request: LeaseRequest): Pick<LeaseRecord, 'desktop' | 'browser' | 'code'> {
  return { desktop: request.desktop ?? false, browser: request.browser ?? false, code: request.code ?? false }
}

/** The record's type and names before the provider answers. */
const names = (plan: LeasePlan, slug: string): Partial<LeaseRecord> => ({
  serverType: plan.serverType,
  requestedServerType: plan.serverType,
  serverID: 0,
  serverName: providerResourceName(plan.leaseId, slug),
  providerKey: plan.request.providerKey || `crabbox-${plan.leaseId.replace(/_/g, '-')}`,
  host: '',
})

/** Machine fields before the provider answers: names and SSH defaults the provider may override. */
function machineDefaults(plan: LeasePlan, slug: string): Partial<LeaseRecord> {
  const { request } = plan
  const windows =
    plan.ask.target === 'windows' && BROKER_WINDOWS_CLOUDS.has(plan.provider)
      ? windowsBootstrap(plan.provider, plan.ask.windowsMode)
      : undefined
  // A Mac is reached as ec2-user on port 22 only (the AMI installs the lease key for that user).
  if (plan.ask.target === 'macos' && BROKER_MACOS_CLOUDS.has(plan.provider))
    return {
      ...names(plan, slug),
      sshUser: MACOS_DEFAULTS.sshUser,
      sshPort: MACOS_DEFAULTS.sshPort,
      sshFallbackPorts: [],
      workRoot: request.workRoot || MACOS_DEFAULTS.workRoot,
    }
  return {
    ...names(plan, slug),
    // A Windows machine's user and work root are its own (the CLI bootstraps it), not the Linux defaults.
    sshUser: request.sshUser || windows?.sshUser || 'crabbox',
    sshPort: request.sshPort || '2222',
    sshFallbackPorts: [...new Set(request.sshFallbackPorts ?? ['22'])],
    workRoot: request.workRoot || windows?.workRoot || '/work/crabbox',
  }
}

/** The record's Tailscale metadata, hostname first (its template needs the allocated slug). */
function tailscaleRecord(plan: LeasePlan, slug: string): NonNullable<LeaseRecord['tailscale']> {
  const { enabled, ...rest } = plan.tailscale!
  return { enabled, hostname: tailscaleHostname(plan.request, { id: plan.leaseId, slug, provider: plan.provider }), ...rest }
}

/** The `provisioning` record a reservation inserts (expiry computed from its timestamps). */
function newLeaseRecord(plan: LeasePlan, slug: string, nowIso: string): LeaseRecord {
  const { request, identity } = plan
  const lease = {
    id: plan.leaseId,
    slug,
    provider: plan.provider,
    ...plan.ask,
    ...requestedFeatures(request),
    ...(plan.tailscale ? { tailscale: tailscaleRecord(plan, slug) } : {}),
    owner: identity.owner,
    org: identity.org,
    profile: request.profile || 'default',
    class: plan.leaseClass,
    ...machineDefaults(plan, slug),
    keep: request.keep ?? false,
    ttlSeconds: plan.ttlSeconds,
    idleTimeoutSeconds: plan.idleTimeoutSeconds,
    estimatedHourlyUSD: plan.hourlyUSD,
    maxEstimatedUSD: maxEstimatedUSD(plan.ttlSeconds, plan.hourlyUSD),
    state: 'provisioning',
    createdAt: nowIso,
    updatedAt: nowIso,
    lastTouchedAt: nowIso,
    expiresAt: '',
  } as LeaseRecord
  lease.expiresAt = computeExpiresAt(lease)
  return withOwnerNamespace(lease, identity.claimed)
}

/** Validates the request and prices it; may call the provider, so never inside a transaction. */
async function planLease(deps: FleetDeps, identity: Identity, request: LeaseRequest, leaseId: string): Promise<LeasePlan> {
  const providerName = request.provider?.trim().toLowerCase() || defaultProvider(deps)
  const provider = deps.providers.get(providerName)
  const ask = checkLeaseAsk(request, providerName)
  const tailscale = planTailscale(deps.env, request, ask.target)
  const leaseClass = request.class || 'beast'
  const serverType = recordServerType(providerName, leaseClass, request.serverType, ask.target)
  return {
    leaseId,
    identity,
    request,
    provider: providerName,
    ask,
    ...(tailscale ? { tailscale } : {}),
    leaseClass,
    serverType,
    ttlSeconds: clampSeconds(request.ttlSeconds, DEFAULT_TTL_SECONDS, minLeaseSeconds(deps.env)),
    idleTimeoutSeconds: clampSeconds(request.idleTimeoutSeconds, DEFAULT_IDLE_SECONDS, minLeaseSeconds(deps.env)),
    hourlyUSD: await hourlyRate(deps.env, providerName, provider, serverType),
  }
}

/**
 * Checks caps and inserts the `provisioning` record in one transaction. `raced`
 * when a concurrent create with this ID reserved it first (while this one priced).
 */
function reserveLease(deps: FleetDeps, plan: LeasePlan): { raced: boolean; lease: LeaseRecord } {
  const { storage } = deps
  const now = deps.now()
  const nowIso = now.toISOString()
  const requested = normalizeSlug(plan.request.slug ?? plan.request.requestedSlug ?? '')
  return storage.transaction(() => {
    const raced = getLeaseRecord(storage, plan.leaseId)
    if (raced) return { raced: true, lease: raced }
    const slug = allocateSlug(storage, plan.identity, requested || defaultSlug(plan.leaseId), plan.leaseId, now)
    const lease = newLeaseRecord(plan, slug, nowIso)
    enforceCaps(
      storage,
      costLimits(deps.env),
      {
        owner: lease.owner,
        org: lease.org,
        claimed: plan.identity.claimed,
        credential: plan.identity.credential,
        month: monthOf(nowIso),
        reservedUSD: lease.maxEstimatedUSD ?? 0,
      },
      maxActiveLeasesPerCredential(deps.env),
    )
    insertLease(storage, lease, monthOf(nowIso), plan.identity.credential)
    return { raced: false, lease }
  })
}

/** Creates a lease (see the module comment). */
export async function createLease(deps: FleetDeps, identity: Identity, request: LeaseRequest): Promise<CreateResult> {
  const { storage } = deps
  const leaseId = request.leaseID && isLeaseId(request.leaseID) ? request.leaseID : newLeaseId()
  const pending = inflightFor(storage)
  const ask = provisionAsk(request)

  const track = async (work: Promise<LeaseRecord>): Promise<LeaseRecord> => {
    pending.set(leaseId, work)
    try {
      return await work
    } finally {
      pending.delete(leaseId)
    }
  }

  const existingOutcome = async (): Promise<CreateResult | undefined> => {
    const existing = getLeaseRecord(storage, leaseId)
    if (!existing) return undefined
    // Another owner's lease ID looks exactly like a missing lease; one the caller may see but not own is a conflict.
    if (!canSeeLease(existing, identity)) throw new ApiError(404, ErrorCode.notFound, `lease ${leaseId} not found`)
    if (!ownedBy(existing, identity))
      throw new ApiError(409, ErrorCode.leaseIdConflict, `lease ID ${leaseId} is already in use; retry without leaseID or with a new one`)
    const first = pending.get(leaseId)
    if (first) return { lease: await first, created: false }
    // Reserved by an object instance that is gone (evicted mid-create): finish the job.
    // Providers adopt a machine that already carries this lease's label, so this never makes a second one.
    if (existing.state === 'provisioning') return { lease: await track(provision(deps, existing, ask)), created: false }
    // Never hand back a lease with no machine as if the retry had worked.
    if (existing.state === 'failed') throw unconfirmed(existing)
    return { lease: existing, created: false }
  }
  const early = await existingOutcome()
  if (early) return early

  const reservation = reserveLease(deps, await planLease(deps, identity, request, leaseId))
  if (reservation.raced) return (await existingOutcome()) ?? { lease: reservation.lease, created: false }
  // Armed before the provider call: if this object dies mid-create, the alarm still expires
  // the reservation and deletes whatever machine carries its lease label.
  await deps.wakeBy(Date.parse(reservation.lease.expiresAt))

  return { lease: await track(provision(deps, reservation.lease, ask)), created: true }
}

const unconfirmed = (lease: LeaseRecord) =>
  new ApiError(
    502,
    ErrorCode.providerFailed,
    `${lease.provider} did not confirm the machine for ${lease.id}; it will be cleaned up. Create the lease again with a new lease ID.`,
  )

/** Asks the provider for the machine; a throw is returned as `failure` (its outcome may be unknown). */
async function createMachine(
  provider: BrokerProvider,
  lease: LeaseRecord,
  ask: ProvisionAsk,
): Promise<{ machine?: Machine; failure?: unknown }> {
  try {
    const machine = await provider.create({
      leaseId: lease.id,
      slug: lease.slug,
      owner: lease.owner,
      org: lease.org,
      profile: lease.profile ?? 'default',
      class: lease.class ?? '',
      serverType: ask.serverType,
      serverTypeExplicit: ask.serverTypeExplicit,
      target: lease.target,
      ...(lease.target === 'windows' && { windowsMode: lease.windowsMode ?? 'normal' }),
      market: ask.market,
      sshPublicKey: ask.sshPublicKey,
      providerKey: lease.providerKey ?? '',
      keep: lease.keep,
      ttlSeconds: lease.ttlSeconds,
      idleTimeoutSeconds: lease.idleTimeoutSeconds,
      expiresAt: lease.expiresAt,
      placement: ask.placement,
      bootstrap: ask.bootstrap,
    })
    return { machine }
  } catch (failure) {
    return { failure }
  }
}

/**
 * The machine's fate is unknown and the provider cannot say: the lease fails and
 * its machine (found by lease label) is queued for deletion.
 */
function markUnconfirmed(deps: FleetDeps, lease: LeaseRecord): void {
  const { storage } = deps
  storage.transaction(() => {
    const current = getLeaseRecord(storage, lease.id)
    if (!current) return
    const now = deps.now().toISOString()
    // Released meanwhile: it stays released, but the machine may exist all the same.
    if (current.state === 'provisioning')
      saveRecord(storage, { ...current, state: 'failed', maxEstimatedUSD: 0, updatedAt: now, endedAt: now })
    storage.run(
      'UPDATE leases SET cleanup_at = ?, machine = ? WHERE id = ?',
      deps.now().getTime(),
      JSON.stringify({ id: '', name: current.serverName ?? '', labels: {} }),
      lease.id,
    )
  })
}

/** Records the machine on the lease (active unless released meanwhile); undefined when the lease is gone. */
function attachMachine(deps: FleetDeps, lease: LeaseRecord, machine: Machine): LeaseRecord | undefined {
  const { storage } = deps
  // A provider that picked another type prices it; otherwise the reservation's rate stands.
  const hourly =
    typeof machine.hourlyUSD === 'number' && machine.hourlyUSD >= 0 && machine.serverType !== lease.serverType
      ? machine.hourlyUSD
      : (lease.estimatedHourlyUSD ?? 0)
  return storage.transaction(() => {
    const current = getLeaseRecord(storage, lease.id)
    if (!current) return undefined
    const nowIso = deps.now().toISOString()
    const next: LeaseRecord = {
      ...current,
      state: current.state === 'provisioning' ? 'active' : current.state,
      cloudID: machine.id,
      serverID: /^\d+$/.test(machine.id) ? Number(machine.id) : 0,
      serverName: machine.name,
      serverType: machine.serverType || current.serverType,
      host: machine.host,
      sshUser: machine.sshUser,
      sshPort: machine.sshPort,
      sshFallbackPorts: machine.sshFallbackPorts,
      workRoot: machine.workRoot,
      estimatedHourlyUSD: hourly,
      maxEstimatedUSD: maxEstimatedUSD(current.ttlSeconds, hourly),
      ...(machine.region ? { region: machine.region } : {}),
      ...(machine.market ? { market: machine.market } : {}),
      ...(machine.hostKeys?.length ? { hostKeys: machine.hostKeys } : {}),
      updatedAt: nowIso,
      lastTouchedAt: nowIso,
    }
    next.expiresAt = computeExpiresAt(next)
    saveRecord(storage, next)
    const ref: MachineRef = {
      id: machine.id,
      name: machine.name,
      labels: machine.labels,
      ...(machine.region ? { region: machine.region } : {}),
    }
    storage.run('UPDATE leases SET machine = ? WHERE id = ?', JSON.stringify(ref), lease.id)
    // Released (or expired) while provisioning: the machine must go right away.
    if (next.state !== 'active') queueCleanup(storage, lease.id, deps.now().getTime())
    return next
  })
}

/** The SSH user, ports and work root the reservation recorded (what the lease asked for, else the bootstrap defaults). */
function bootstrapOf(lease: LeaseRecord, machine: Machine): Pick<Machine, 'sshUser' | 'sshPort' | 'sshFallbackPorts' | 'workRoot'> {
  return {
    sshUser: lease.sshUser ?? machine.sshUser,
    sshPort: lease.sshPort ?? machine.sshPort,
    sshFallbackPorts: lease.sshFallbackPorts ?? machine.sshFallbackPorts,
    workRoot: lease.workRoot ?? machine.workRoot,
  }
}

/**
 * A Tailscale lease's bootstrap gets a freshly minted one-off auth key (never
 * stored: it lives in this ask only). When the key cannot be minted, the
 * reservation goes and nothing is made.
 */
async function withTailscaleKey(deps: FleetDeps, lease: LeaseRecord, ask: ProvisionAsk): Promise<ProvisionAsk> {
  const metadata = lease.tailscale
  if (!metadata?.enabled) return ask
  let authKey: string
  try {
    authKey = await mintTailscaleKey(deps, lease.id, metadata.tags ?? [])
  } catch (error) {
    deps.storage.run("DELETE FROM leases WHERE id = ? AND state = 'provisioning'", lease.id)
    throw error
  }
  const tailscale = {
    authKey,
    hostname: metadata.hostname ?? '',
    tags: metadata.tags ?? [],
    ...(metadata.exitNode ? { exitNode: metadata.exitNode, exitNodeAllowLanAccess: metadata.exitNodeAllowLanAccess ?? false } : {}),
  }
  return { ...ask, bootstrap: { ...ask.bootstrap, tailscale } }
}

/** Makes the machine for a reserved lease and records it; see createLease for the failure rules. */
async function provision(deps: FleetDeps, lease: LeaseRecord, plainAsk: ProvisionAsk): Promise<LeaseRecord> {
  const provider = deps.providers.get(lease.provider)
  const ask = await withTailscaleKey(deps, lease, plainAsk)
  const { failure, ...created } = await createMachine(provider, lease, ask)
  let machine = created.machine
  if (!machine && !(failure instanceof ApiError)) {
    // Unknown outcome (timeout, lost reply): the machine may exist. Adopt it by its lease label.
    try {
      machine = await provider.describe(lease.id)
    } catch {
      markUnconfirmed(deps, lease)
      await deps.wakeBy(deps.now().getTime())
      throw unconfirmed(lease)
    }
  }
  if (!machine) {
    deps.storage.run("DELETE FROM leases WHERE id = ? AND state = 'provisioning'", lease.id)
    if (failure instanceof ApiError) throw failure
    throw new ApiError(
      502,
      ErrorCode.providerFailed,
      `${lease.provider} could not create a machine: ${failure instanceof Error ? failure.message : String(failure)}`,
    )
  }
  // A bootstrapped machine has the SSH settings the lease recorded, also when it was adopted.
  if (provider.bootstraps) machine = { ...machine, ...bootstrapOf(lease, machine) }
  const ready = attachMachine(deps, lease, machine)
  if (!ready) throw new ApiError(404, ErrorCode.notFound, `lease ${lease.id} disappeared while provisioning`)
  await deps.wakeBy(ready.state === 'active' ? Date.parse(ready.expiresAt) : deps.now().getTime())
  return ready
}
