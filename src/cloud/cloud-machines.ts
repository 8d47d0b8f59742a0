/**
 * What every cloud machine crabbox makes carries, whoever made it (broker or
 * direct mode): names, provider labels/tags, and the rules that decide when a
 * machine may be deleted. Pure and shared; labels are the only state a
 * direct-mode cloud lease has, so they must be enough to prove ownership.
 */
import { LEASE_ID_PATTERN, providerResourceName } from '../protocol/ids.js'

const LEASE_KEY_PATTERN = /^crabbox-cbx-[0-9a-f]{12}$/

/** `cbx_abcdef123456` → `crabbox-cbx-abcdef123456`, the per-lease provider key name. */
export const providerKeyName = (leaseId: string): string => `crabbox-${leaseId.replaceAll('_', '-')}`

/** Only per-lease keys are ever deleted: never a user's own long-lived key. */
export const isLeaseKeyName = (name: string): boolean => LEASE_KEY_PATTERN.test(name)

/** The provider resource name (`crabbox-<slug>-<8 hex>`), kept to a 63-char hostname. */
export function machineName(leaseId: string, slug: string): string {
  const name = providerResourceName(leaseId, slug)
  return name.length <= 63 ? name : providerResourceName(leaseId, slug.slice(0, 63 - (name.length - slug.length)).replace(/-+$/, ''))
}

/** Provider label values: `[A-Za-z0-9_.-]`, ≤ 63 chars, alphanumeric at both ends. */
export function labelValue(value: string | number | boolean | undefined): string {
  const text = String(value ?? '')
    .replace(/[^A-Za-z0-9_.-]/g, '_')
    .slice(0, 63)
    .replace(/^[_.-]+|[_.-]+$/g, '')
  return text || 'unknown'
}

export interface LabelInput {
  provider: string
  leaseId: string
  slug: string
  owner: string
  org: string
  profile: string
  class: string
  serverType: string
  target: string
  keep: boolean
  providerKey: string
  ttlSeconds: number
  idleTimeoutSeconds: number
  createdAt: Date
  market?: string
  /** Capabilities the machine was bootstrapped with; labelled only when true. */
  desktop?: boolean
  browser?: boolean
  code?: boolean
  /** A machine that joins the tailnet: labelled `tailscale`, `tailscale_hostname`, `tailscale_exit_node` (never the key). */
  tailscale?: { hostname: string; exitNode?: string }
  /** A Windows runner's mode (`normal`, `wsl2`), labelled `windows_mode`. */
  windowsMode?: string
}

/** Unix seconds at which an untouched lease expires: `created + min(ttl, idle)`. */
const labelExpiry = (createdAt: Date, ttlSeconds: number, idleTimeoutSeconds: number): number =>
  Math.floor(createdAt.getTime() / 1000) + Math.max(1, Math.min(ttlSeconds, idleTimeoutSeconds))

export function machineLabels(input: LabelInput): Record<string, string> {
  const created = Math.floor(input.createdAt.getTime() / 1000)
  const labels: Record<string, string> = {
    crabbox: 'true',
    created_by: 'crabbox',
    provider: labelValue(input.provider),
    lease: labelValue(input.leaseId),
    slug: labelValue(input.slug),
    owner: labelValue(input.owner),
    org: labelValue(input.org),
    profile: labelValue(input.profile),
    class: labelValue(input.class),
    server_type: labelValue(input.serverType),
    target: labelValue(input.target),
    keep: input.keep ? 'true' : 'false',
    provider_key: labelValue(input.providerKey),
    state: 'leased',
    created_at: String(created),
    last_touched_at: String(created),
    ttl_secs: String(Math.trunc(input.ttlSeconds)),
    idle_timeout_secs: String(Math.trunc(input.idleTimeoutSeconds)),
    expires_at: String(labelExpiry(input.createdAt, input.ttlSeconds, input.idleTimeoutSeconds)),
  }
  if (input.market) labels.market = labelValue(input.market)
  for (const capability of ['desktop', 'browser', 'code'] as const) if (input[capability]) labels[capability] = 'true'
  if (input.tailscale) {
    labels.tailscale = 'true'
    labels.tailscale_hostname = labelValue(input.tailscale.hostname)
    if (input.tailscale.exitNode) labels.tailscale_exit_node = labelValue(input.tailscale.exitNode)
  }
  if (input.windowsMode) labels.windows_mode = labelValue(input.windowsMode)
  return labels
}

/**
 * Labels after a heartbeat: `last_touched_at = now`, `expires_at = min(created + ttl,
 * now + idle)` — the TTL is never extended. Undefined when the labels lack the inputs.
 */
export function touchedLabels(labels: Record<string, string>, now: Date): Record<string, string> | undefined {
  const created = Number(labels.created_at)
  const ttl = Number(labels.ttl_secs)
  const idle = Number(labels.idle_timeout_secs)
  if (![created, ttl, idle].every((n) => Number.isInteger(n) && n > 0)) return undefined
  const nowSeconds = Math.floor(now.getTime() / 1000)
  return { ...labels, last_touched_at: String(nowSeconds), expires_at: String(Math.min(created + ttl, nowSeconds + idle)) }
}

/** Provider-neutral view of one machine, as the cloud API clients return it. */
export interface CloudMachine {
  provider: 'hetzner' | 'aws' | 'azure'
  id: string
  name: string
  /** Public IPv4 once assigned. */
  host?: string
  /** The provider's own status word (`running`, `initializing`, `pending`, `stopped`...). */
  status: string
  serverType: string
  region?: string
  market?: 'spot' | 'on-demand'
  labels: Record<string, string>
  createdAt?: string
}

export interface CleanupDecision {
  delete: boolean
  reason: string
}

/** Machines that may still be doing work get this much grace after their label expiry. */
export const RUNNING_SAFETY_WINDOW_MS = 30 * 60_000
const RUNNING_STATES = new Set(['running', 'starting', 'initializing', 'pending', 'rebuilding', 'migrating'])

/**
 * Direct-mode cleanup: delete only what the labels prove is an expired crabbox
 * machine. Anything missing or malformed means "not ours to judge" → keep.
 */
export function cleanupDecision(machine: CloudMachine, now: Date, safetyWindowMs = RUNNING_SAFETY_WINDOW_MS): CleanupDecision {
  const labels = machine.labels
  if (labels.crabbox !== 'true' || labels.created_by !== 'crabbox') return { delete: false, reason: 'not labelled as a crabbox machine' }
  if (!LEASE_ID_PATTERN.test(labels.lease ?? '')) return { delete: false, reason: 'no valid lease label' }
  if (labels.keep !== 'false') return { delete: false, reason: labels.keep === 'true' ? 'kept (keep=true)' : 'keep label missing' }
  const expires = Number(labels.expires_at)
  if (!Number.isInteger(expires) || expires <= 0) return { delete: false, reason: 'no valid expires_at label' }
  const expiresMs = expires * 1000
  const nowMs = now.getTime()
  if (nowMs < expiresMs) return { delete: false, reason: `not expired (expires ${new Date(expiresMs).toISOString()})` }
  if (RUNNING_STATES.has(machine.status) && nowMs < expiresMs + safetyWindowMs) {
    return { delete: false, reason: `expired but ${machine.status}; inside the ${Math.round(safetyWindowMs / 60_000)}m safety window` }
  }
  return { delete: true, reason: `expired ${new Date(expiresMs).toISOString()}` }
}

/** Errors from a cloud API, classified so callers decide between fallback, retry and failure. */
export type CloudErrorCategory =
  'capacity' | 'quota' | 'unsupported' | 'rate_limit' | 'transient' | 'not_found' | 'conflict' | 'auth' | 'fatal'

export class CloudApiError extends Error {
  constructor(
    readonly provider: 'hetzner' | 'aws' | 'azure',
    readonly category: CloudErrorCategory,
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message)
    this.name = 'CloudApiError'
  }

  /** Worth trying the next type/region/market. */
  get fallback(): boolean {
    return this.category === 'capacity' || this.category === 'quota' || this.category === 'unsupported'
  }

  /** Worth repeating the same call after a pause. */
  get retryable(): boolean {
    return this.category === 'rate_limit' || this.category === 'transient'
  }
}

/** How a cloud API client talks and waits; the Hetzner and EC2 clients take these beside their credentials. */
export interface CloudClientOptions {
  fetch?: (request: Request) => Promise<Response>
  /** Per request; a timed-out create is looked up by its lease label before anything is retried. */
  timeoutMs?: number
  pollIntervalMs?: number
  /** How long to wait for a new machine's public IPv4. */
  addressTimeoutMs?: number
  sleep?: (ms: number) => Promise<void>
}

/**
 * Polls `look` until the machine has a public IPv4 (new and adopted machines may
 * still be booting): the first look within a second, since addresses often come
 * that fast, then at the steady interval, until the address timeout.
 */
export async function waitForAddress(
  machine: CloudMachine,
  options: Required<Pick<CloudClientOptions, 'addressTimeoutMs' | 'pollIntervalMs' | 'sleep'>>,
  describe: string,
  look: () => Promise<CloudMachine>,
): Promise<CloudMachine> {
  const deadline = Date.now() + options.addressTimeoutMs
  let current = machine
  for (let polls = 0; !current.host; polls++) {
    if (Date.now() > deadline)
      throw new CloudApiError(
        machine.provider,
        'transient',
        'timeout',
        `${describe} has no public IPv4 after ${Math.round(options.addressTimeoutMs / 1000)} s`,
      )
    await options.sleep(polls === 0 ? Math.min(1_000, options.pollIntervalMs) : options.pollIntervalMs)
    current = await look()
  }
  return current
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export interface RetryOptions {
  attempts: number
  delayMs: number
  sleep?: (ms: number) => Promise<void>
}

/** Repeats `call` while it fails with a retryable cloud error (rate limit, 5xx, timeout). */
export async function withRetries<T>(call: () => Promise<T>, options: RetryOptions): Promise<T> {
  const wait = options.sleep ?? sleep
  for (let attempt = 1; ; attempt++) {
    try {
      return await call()
    } catch (error) {
      if (!(error instanceof CloudApiError && error.retryable) || attempt >= options.attempts) throw error
      await wait(options.delayMs * attempt)
    }
  }
}

/**
 * A fetch with a deadline. A timeout becomes a `transient` error: the request
 * may or may not have reached the provider, so callers look before retrying.
 */
export async function timedFetch(
  provider: 'hetzner' | 'aws' | 'azure',
  fetchImpl: (request: Request) => Promise<Response>,
  request: Request,
  timeoutMs: number,
): Promise<Response> {
  let timer: ReturnType<typeof setTimeout> | undefined
  // Aborting frees the socket: a hung provider must not keep the CLI process alive.
  const controller = new AbortController()
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort()
      reject(
        new CloudApiError(
          provider,
          'transient',
          'timeout',
          `${request.method} ${new URL(request.url).pathname} timed out after ${timeoutMs} ms`,
        ),
      )
    }, timeoutMs)
  })
  try {
    return await Promise.race([fetchImpl(new Request(request, { signal: controller.signal })), timeout])
  } catch (error) {
    if (error instanceof CloudApiError) throw error
    throw new CloudApiError(provider, 'transient', 'network', `${request.method} ${new URL(request.url).host}: ${(error as Error).message}`)
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
}
