import * as v from 'valibot'
import { ApiError, ErrorCode, describeIssues } from '../../src/protocol/errors.js'
import { StaticPool, type StaticPoolHost } from '../../src/protocol/leases.js'
import { setting } from '../env.js'
import type { FleetStorage } from '../fleet/storage.js'
import type { BootstrapAsk, BrokerProvider, BrokerProviderContext, ListableProvider, Machine } from './types.js'

/**
 * The static pool: existing SSH hosts from `CRABBOX_STATIC_POOL`. A lease claims
 * one free host (a row in `static_claims`, unique per host and per lease); its
 * release deletes the claim. Nothing is created or destroyed on the hosts —
 * users reach them with keys already authorized there, and nothing isolates one
 * lessee from the next. An entry's `hostKey`/`hostKeys` go on the lease for the CLI to pin.
 */

/** Host claims; applied once when the Fleet object starts (fleet/schema.ts). */
export const STATIC_POOL_SCHEMA = [
  `CREATE TABLE static_claims (
     host_name TEXT PRIMARY KEY,
     lease_id TEXT NOT NULL UNIQUE,
     claimed_at TEXT NOT NULL
   )`,
]

export function parseStaticPool(raw: string | undefined): StaticPoolHost[] {
  if (!raw) return []
  let json: unknown
  try {
    json = JSON.parse(raw)
  } catch {
    throw new ApiError(
      503,
      'static_pool_invalid',
      'CRABBOX_STATIC_POOL is not valid JSON; set it to an array of {name, host, port, user, workRoot, hostKey}',
    )
  }
  const parsed = v.safeParse(StaticPool, json)
  if (!parsed.success) throw new ApiError(503, 'static_pool_invalid', `CRABBOX_STATIC_POOL: ${describeIssues(parsed.issues)}`)
  return parsed.output
}

/** The entry's host keys, `hostKey` first, without repeats. */
const hostKeysOf = (host: StaticPoolHost): string[] => [...new Set([...(host.hostKey ? [host.hostKey] : []), ...(host.hostKeys ?? [])])]

function toMachine(host: StaticPoolHost, leaseId?: string): Machine {
  const hostKeys = hostKeysOf(host)
  return {
    provider: 'static',
    id: host.name,
    name: host.name,
    host: host.host,
    sshUser: host.user,
    sshPort: host.port,
    sshFallbackPorts: host.fallbackPorts,
    workRoot: host.workRoot,
    serverType: 'ssh',
    hourlyUSD: 0,
    labels: leaseId ? { crabbox: 'true', lease: leaseId } : { crabbox: 'true' },
    ...(hostKeys.length ? { hostKeys } : {}),
  }
}

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((item, i) => item === b[i])

/**
 * Pool hosts that have the SSH user, ports, work root and capabilities the lease asked for
 * (nothing is set up on a static host, so a lease can only pick one that fits; the
 * operator declares a host's desktop, browser and code-server in its pool entry).
 * When none does, a 400 names the first field no host has, and the values the pool offers.
 */
function matchingHosts(hosts: StaticPoolHost[], ask: BootstrapAsk): StaticPoolHost[] {
  const checks: ReadonlyArray<
    readonly [field: string, asked: unknown, fits: (host: StaticPoolHost) => boolean, shown: (host: StaticPoolHost) => string]
  > = [
    ['sshUser', ask.sshUser, (h) => h.user === ask.sshUser, (h) => h.user],
    ['sshPort', ask.sshPort, (h) => h.port === ask.sshPort, (h) => h.port],
    [
      'sshFallbackPorts',
      ask.sshFallbackPorts,
      (h) => sameList(h.fallbackPorts, ask.sshFallbackPorts ?? []),
      (h) => `[${h.fallbackPorts.join(',')}]`,
    ],
    ['workRoot', ask.workRoot, (h) => h.workRoot === ask.workRoot, (h) => h.workRoot],
    ...(['desktop', 'browser', 'code'] as const).map(
      (capability) => [capability, ask[capability] || undefined, (h: StaticPoolHost) => h[capability], () => `no ${capability}`] as const,
    ),
  ]
  let left = hosts
  for (const [field, asked, fits, shown] of checks) {
    if (asked === undefined || !hosts.length) continue
    const fitting = left.filter(fits)
    if (!fitting.length)
      throw new ApiError(
        400,
        ErrorCode.invalidRequest,
        `${field} ${JSON.stringify(asked)}: no static pool host${left.length < hosts.length ? ' with the other settings asked for' : ''} has it (the pool has ${[...new Set(left.map(shown))].join(', ')}); leave it out to take any host`,
      )
    left = fitting
  }
  return left
}

function claimFor(storage: FleetStorage, leaseId: string): string | undefined {
  return storage.one<{ host_name: string }>('SELECT host_name FROM static_claims WHERE lease_id = ?', leaseId)?.host_name
}

export function createStaticProvider(context: BrokerProviderContext): BrokerProvider & ListableProvider {
  const { storage } = context
  const pool = () => parseStaticPool(setting(context.env, 'CRABBOX_STATIC_POOL'))

  return {
    name: 'static',
    async create(request) {
      const hosts = matchingHosts(pool(), request.bootstrap ?? {})
      if (!hosts.length) throw new ApiError(503, ErrorCode.noCapacity, 'the broker has no static pool; set CRABBOX_STATIC_POOL')
      // Claim inside one synchronous transaction: two leases can never get the same host.
      const host = storage.transaction(() => {
        const existing = claimFor(storage, request.leaseId)
        if (existing) return hosts.find((h) => h.name === existing)
        // One JSON binding for the whole pool (SQLite caps bound parameters); pool order wins.
        const row = storage.one<{ name: string }>(
          'SELECT value AS name FROM json_each(?) WHERE value NOT IN (SELECT host_name FROM static_claims) ORDER BY key LIMIT 1',
          JSON.stringify(hosts.map((h) => h.name)),
        )
        const free = row ? hosts.find((h) => h.name === row.name) : undefined
        if (free)
          storage.run(
            'INSERT INTO static_claims (host_name, lease_id, claimed_at) VALUES (?, ?, ?)',
            free.name,
            request.leaseId,
            new Date().toISOString(),
          )
        return free
      })
      if (!host)
        throw new ApiError(503, ErrorCode.noCapacity, `all ${hosts.length} static hosts are leased; release one or try again later`)
      return toMachine(host, request.leaseId)
    },
    async delete(machine) {
      storage.run('DELETE FROM static_claims WHERE lease_id = ?', machine.leaseId)
    },
    async describe(leaseId) {
      const name = claimFor(storage, leaseId)
      const host = name ? pool().find((h) => h.name === name) : undefined
      return host ? toMachine(host, leaseId) : undefined
    },
    async price() {
      return 0
    },
    async list() {
      const hosts = pool()
      if (!hosts.length) return []
      const claims = new Map(
        storage
          .all<{ name: string; lease_id: string }>(
            'SELECT j.value AS name, c.lease_id FROM json_each(?) j JOIN static_claims c ON c.host_name = j.value',
            JSON.stringify(hosts.map((h) => h.name)),
          )
          .map((row) => [row.name, row.lease_id]),
      )
      return hosts.map((h) => ({
        ...toMachine(h, claims.get(h.name)),
        labels: {
          crabbox: 'true',
          status: claims.has(h.name) ? 'leased' : 'free',
          ...(claims.get(h.name) ? { lease: claims.get(h.name)! } : {}),
        },
      }))
    },
  }
}
