import { join } from 'node:path'
import type { Config } from '../config/schema.js'
import { parseDuration } from '../config/schema.js'
import { leaseKeyDir } from '../paths.js'
import { CrabboxError } from '../errors.js'
import { LeaseListResponse, LeaseResponse, type LeaseRecord } from '../protocol/leases.js'
import { ambiguousLease } from '../providers/pick.js'
import { directProvider, isDelegatedProvider } from '../providers/registry.js'
import type { DirectProvider, Lease } from '../providers/types.js'
import { BrokerError, brokerClient, type BrokerClient } from '../transport/broker/client.js'
import type { Progress } from '../ui/progress.js'
import { ensureLeaseKey, ownSshKey, removeLeaseKey } from '../transport/ssh/keys.js'
import { pinHostKeys } from '../transport/ssh/known-hosts.js'
import { defaultSlug, newLeaseId, normalizeSlug } from '../protocol/ids.js'
import { findReleased, rememberReleased } from '../providers/released.js'
import { forgetClaim } from './claims.js'
import { checkDirectAsk, leaseAsk, missingCapabilities } from './lease-request.js'
import { leaseKeyType } from '../cloud/targets.js'

export interface LeaseContext {
  config: Config
  progress: Progress
}

/** Where leases come from: the broker when one is configured, else a direct provider. */
export interface LeaseBackend {
  mode: 'broker' | 'direct'
  /** The provider name leases are requested from. */
  provider: string
  /** `managed` runners have crabbox-ready; `static` ones are checked for sh, tar and git. */
  readiness(lease: Lease): 'managed' | 'static'
  acquire(options: { keep: boolean; leaseId?: string }): Promise<Lease>
  resolve(idOrSlug: string): Promise<Lease>
  /** Idempotent; a lease that is already gone is fine. */
  release(lease: Lease): Promise<void>
  list(): Promise<Lease[]>
  /** A lease with this ID or slug that is known to be released or expired (for `stop`), if any. */
  findGone(idOrSlug: string): Promise<{ id: string; slug: string } | undefined>
  /**
   * The provider's state of the lease's machine, labelled (`hetzner: starting`, `broker: active`), read
   * once; shown while the runner boots. Absent where there is none (local, ssh).
   */
  machineState?(lease: Pick<Lease, 'id' | 'provider' | 'details'>): Promise<string | undefined>
  broker?: BrokerClient
}

const seconds = (duration: string) => Math.max(1, Math.round(parseDuration(duration) / 1000))

const keyPaths = (leaseId: string, type: 'ed25519' | 'rsa' = 'ed25519') => ({
  privateKeyPath: join(leaseKeyDir(leaseId), type === 'rsa' ? 'id_rsa' : 'id_ed25519'),
  knownHostsPath: join(leaseKeyDir(leaseId), 'known_hosts'),
})

/**
 * A broker lease record as the pipeline sees it; the raw record stays in `details.record`.
 * Static pool hosts are never touched by the broker, so they take the user's own key
 * (`ssh.key`, else `~/.ssh/id_ed25519`, else `~/.ssh/id_rsa`), as `ssh` would.
 */
function leaseFromRecord(record: LeaseRecord, config?: Config): Lease {
  const ownHost = record.provider === 'static' && config !== undefined
  const key = ownHost ? ownSshKey(config.ssh.key) : undefined
  // Like ssh, unless ssh.key names the one key to use: the ssh-agent's keys are offered after the key file.
  const agentSocket = ownHost && !config.ssh.key && process.env.SSH_AUTH_SOCK ? { agentSocket: process.env.SSH_AUTH_SOCK } : {}
  const ownKey = { ...(key ? { privateKeyPath: key } : {}), ...agentSocket }
  // A Windows machine the broker made: the RSA lease key, and the CLI bootstraps it over SSH.
  const windows =
    record.target === 'windows' ? ({ mode: record.windowsMode === 'wsl2' ? 'wsl2' : 'normal', bootstrap: !ownHost } as const) : undefined
  return {
    id: record.id,
    slug: record.slug,
    provider: record.provider,
    ssh: {
      host: record.host ?? '',
      port: Number(record.sshPort ?? 22),
      fallbackPorts: (record.sshFallbackPorts ?? []).map(Number),
      user: record.sshUser ?? 'crabbox',
      ...keyPaths(record.id, windows && !ownHost ? 'rsa' : 'ed25519'),
      ...ownKey,
    },
    ...(windows && { windows }),
    workRoot: record.workRoot ?? '/work/crabbox',
    serverType: record.serverType,
    state: record.state,
    keep: record.keep,
    expiresAt: record.expiresAt,
    idleTimeoutSeconds: record.idleTimeoutSeconds,
    details: { record },
    capabilities: { desktop: record.desktop === true, browser: record.browser === true, code: record.code === true },
  }
}

/** Pins the host keys a broker lease carries (static pool entries with `hostKey`); without them the first key is trusted. */
async function pinLeaseHostKeys(lease: Lease, record: LeaseRecord): Promise<Lease> {
  if (record.hostKeys?.length && lease.ssh.host)
    await pinHostKeys(lease.ssh.knownHostsPath, lease.ssh.host, [lease.ssh.port, ...lease.ssh.fallbackPorts], record.hostKeys)
  return lease
}

/** Releases a broker lease; release is what stops the meter, so transient failures are retried a few times. */
async function releaseBrokerLease(client: BrokerClient, lease: Lease): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.request('POST', `/v1/leases/${encodeURIComponent(lease.id)}/release`, {
        body: { delete: true },
        schema: LeaseResponse,
        timeoutMs: 60_000,
      })
      return
    } catch (error) {
      if (error instanceof BrokerError && error.status === 404) return
      const transient = error instanceof BrokerError && (error.status === 0 || error.status >= 500)
      if (!transient || attempt >= 3) throw error
      await new Promise((r) => setTimeout(r, attempt * 1000))
    }
  }
}

function brokerBackend(client: BrokerClient, context: LeaseContext): LeaseBackend {
  const { config } = context
  // `broker` (the default when a broker is configured) sends no provider: the broker uses its own
  // default (its static pool when it has one). An existing host (`ssh`, alias `static`) is the static pool.
  const provider = config.provider === 'broker' ? undefined : config.provider === 'ssh' ? 'static' : config.provider
  return {
    mode: 'broker',
    provider: provider ?? 'broker',
    broker: client,
    readiness: (lease) => (lease.provider === 'static' ? 'static' : 'managed'),
    async acquire({ keep, leaseId = newLeaseId() }) {
      const key = await ensureLeaseKey(leaseId, config.target === 'windows' ? 'rsa' : 'ed25519')
      const { lease } = await client.request('POST', '/v1/leases', {
        schema: LeaseResponse,
        body: {
          leaseID: leaseId,
          slug: defaultSlug(leaseId),
          provider,
          ...leaseAsk(config, provider),
          ttlSeconds: seconds(config.ttl),
          idleTimeoutSeconds: seconds(config.idleTimeout),
          keep,
          sshPublicKey: key.publicKey,
          providerKey: `crabbox-${leaseId.replace('_', '-')}`,
        },
      })
      const missing = missingCapabilities(config, lease)
      if (missing.length) {
        await releaseBrokerLease(client, leaseFromRecord(lease, config)).catch(() => undefined)
        throw new CrabboxError(`the broker made lease ${lease.id} without ${missing.join(', ')}; it was released`, {
          exit: 'provisioning',
          code: 'capability_missing',
          hint: `this broker cannot give ${missing.join(', ')}; drop ${missing.map((name) => `--${name}`).join(', ')}`,
        })
      }
      return pinLeaseHostKeys(leaseFromRecord(lease, config), lease)
    },
    async resolve(idOrSlug) {
      let record: LeaseRecord
      try {
        record = (await client.request('GET', `/v1/leases/${encodeURIComponent(idOrSlug)}`, { schema: LeaseResponse })).lease
      } catch (error) {
        if (error instanceof BrokerError && error.status === 404) throw notFound(idOrSlug)
        throw error
      }
      await ensureLeaseKey(record.id, record.target === 'windows' && record.provider !== 'static' ? 'rsa' : 'ed25519')
      return pinLeaseHostKeys(leaseFromRecord(record, config), record)
    },
    release: (lease) => releaseBrokerLease(client, lease),
    async list() {
      const { leases } = await client.request('GET', '/v1/leases', { query: { state: 'active', limit: 500 }, schema: LeaseListResponse })
      return leases.map((record) => leaseFromRecord(record, config))
    },
    async findGone(idOrSlug) {
      // By ID the broker answers for any state; a slug names only a live lease, so look through recent ones.
      const { leases } = await client.request('GET', '/v1/leases', { query: { limit: 100 }, schema: LeaseListResponse })
      const slug = normalizeSlug(idOrSlug)
      return leases.find((l) => (l.id === idOrSlug || l.slug === slug) && l.state !== 'active' && l.state !== 'provisioning')
    },
    async machineState(lease) {
      const { lease: record } = await client.request('GET', `/v1/leases/${encodeURIComponent(lease.id)}`, {
        schema: LeaseResponse,
        timeoutMs: 10_000,
      })
      return `broker: ${record.state}`
    },
  }
}

function directBackend(provider: DirectProvider, context: LeaseContext): LeaseBackend {
  return {
    mode: 'direct',
    provider: provider.name,
    readiness: () => provider.readiness,
    async acquire({ keep, leaseId = newLeaseId() }) {
      checkDirectAsk(provider.name, context.config)
      const key = await ensureLeaseKey(leaseId, leaseKeyType(provider.name, context.config.target))
      return provider.acquire(
        { leaseId, keep, ttlSeconds: seconds(context.config.ttl), idleTimeoutSeconds: seconds(context.config.idleTimeout), ...key },
        context,
      )
    },
    resolve: (idOrSlug) => resolveDirect(provider, idOrSlug, context),
    async release(lease) {
      await (lease.provider === provider.name ? provider : await directProvider(lease.provider)).release(lease, context)
      rememberReleased(lease)
    },
    list: () => provider.list(context),
    findGone: async (idOrSlug) => findReleased(idOrSlug),
    ...(provider.machineState && {
      async machineState(lease: Pick<Lease, 'id' | 'provider' | 'details'>) {
        const state = await provider.machineState?.(lease, context)
        return state && `${lease.provider}: ${state}`
      },
    }),
  }
}

/**
 * Direct mode finds a lease wherever this machine recorded it (local
 * workspaces, ssh claims), so an ID or slug means the same thing whatever
 * `--provider` says; the configured provider is asked first.
 */
async function resolveDirect(first: DirectProvider, idOrSlug: string, context: LeaseContext): Promise<Lease> {
  const others = await Promise.all(['local', 'ssh'].filter((n) => n !== first.name).map((n) => directProvider(n)))
  const found: Lease[] = []
  for (const provider of [first, ...others]) {
    try {
      const lease = await provider.resolve(idOrSlug, context)
      if (lease.id === idOrSlug) return lease
      found.push(lease)
    } catch (error) {
      // Ambiguity inside one provider is already the final answer.
      if (error instanceof CrabboxError && error.code === 'ambiguous') throw error
      if (!(error instanceof CrabboxError && error.exitCode === 4)) throw error
    }
  }
  if (found.length === 1) return found[0]
  if (found.length > 1) throw ambiguousLease(idOrSlug, found)
  throw notFound(idOrSlug)
}

const notFound = (idOrSlug: string) =>
  new CrabboxError(`no active lease ${idOrSlug}`, { exit: 'notFound', code: 'not_found', hint: 'run `crabbox list` to see active leases' })

/**
 * The broker when one is configured, else the configured direct provider. `local` is always
 * this machine's: a kept local lease stays listable and stoppable with `--provider local`.
 * Delegated providers (`blacksmith-testbox`) are never brokered.
 */
export async function leaseBackend(context: LeaseContext): Promise<LeaseBackend> {
  const client = brokerClient(context.config)
  return withKeyCleanup(
    client && context.config.provider !== 'local' && !isDelegatedProvider(context.config.provider)
      ? brokerBackend(client, context)
      : directBackend(await directProvider(context.config.provider), context),
  )
}

/**
 * A lease's key folder (`leaseKeyDir`) lives as long as the lease: removed once it is released,
 * and when asking for it failed (no lease holds that key).
 */
function withKeyCleanup(backend: LeaseBackend): LeaseBackend {
  return {
    ...backend,
    async acquire({ keep, leaseId = newLeaseId() }) {
      try {
        const lease = await backend.acquire({ keep, leaseId })
        // A static host's lease has an ID of its own and the user's key: the generated one is unused.
        if (lease.id !== leaseId) await removeLeaseKey(leaseId).catch(() => undefined)
        return lease
      } catch (error) {
        await removeLeaseKey(leaseId).catch(() => undefined)
        throw error
      }
    },
    async release(lease) {
      await backend.release(lease)
      await removeLeaseKey(lease.id).catch(() => undefined)
      forgetClaim(lease.id)
    },
  }
}

/** `stop` of a lease that has already ended: only its key folder and repo claim are left to remove. */
export const forgetLeaseKey = async (leaseId: string) => {
  forgetClaim(leaseId)
  await removeLeaseKey(leaseId).catch(() => undefined)
}

/** Resolves a lease by ID or slug, through the broker or this machine's records (exit 4 when missing or ambiguous). */
export async function resolveLease(idOrSlug: string, context: LeaseContext): Promise<Lease> {
  return (await leaseBackend(context)).resolve(idOrSlug)
}
