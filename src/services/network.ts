import { connect } from 'node:net'
import type { Config } from '../config/schema.js'
import { CrabboxError } from '../errors.js'
import type { LeaseRecord } from '../protocol/leases.js'
import type { Lease } from '../providers/types.js'
import type { BrokerClient } from '../transport/broker/client.js'
import { pinHostKeys } from '../transport/ssh/known-hosts.js'
import type { Progress } from '../ui/progress.js'
import { needsTailscaleRefresh, refreshTailscale } from './tailscale-refresh.js'

/**
 * Which address the CLI reaches a runner at (`network`: auto, tailscale,
 * public). `public` is the provider's address. `tailscale` needs a tailnet
 * address that answers on the SSH port, tried in order FQDN, IPv4, hostname.
 * `auto` prefers such an address and otherwise falls back to the provider's
 * address, saying so with one `network fallback tailscale_unreachable` line.
 * The choice and why are kept on the lease (`details.network`) for `status`,
 * `inspect` and `--timing-json`.
 */

export interface NetworkChoice {
  /** How the runner is reached: `tailscale` or `public`. */
  network: 'tailscale' | 'public'
  host: string
  /** Why, as a short word: `requested`, `tailnet_fqdn`, `tailnet_ipv4`, `tailnet_hostname`, `no_tailnet_address`, `tailscale_unreachable`. */
  reason: string
}

/** Probes a TCP port; true when it accepts a connection within the timeout. */
export type PortProbe = (host: string, port: number, timeoutMs: number) => Promise<boolean>

export const tcpProbe: PortProbe = (host, port, timeoutMs) =>
  new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })

const PROBE_TIMEOUT_MS = 3_000

/** The lease's tailnet addresses, best first: FQDN, IPv4, hostname (broker record, or a direct machine's labels). */
export function tailnetCandidates(lease: Lease): Array<{ kind: 'fqdn' | 'ipv4' | 'hostname'; host: string }> {
  const record = lease.details.record as LeaseRecord | undefined
  const metadata = record?.tailscale ?? (lease.details.tailscale as LeaseRecord['tailscale'] | undefined)
  if (!metadata?.enabled || metadata.state === 'failed') return []
  const seen = new Set<string>()
  const out: Array<{ kind: 'fqdn' | 'ipv4' | 'hostname'; host: string }> = []
  for (const kind of ['fqdn', 'ipv4', 'hostname'] as const) {
    const host = metadata[kind]?.trim()
    if (host && !seen.has(host)) {
      seen.add(host)
      out.push({ kind, host })
    }
  }
  return out
}

/** Picks the address (see the module comment); throws for `tailscale` when no tailnet address answers. */
export async function chooseNetwork(
  lease: Lease,
  mode: Config['network'],
  progress: Pick<Progress, 'info'>,
  probe: PortProbe = tcpProbe,
): Promise<NetworkChoice> {
  const publicChoice = (reason: string): NetworkChoice => ({ network: 'public', host: lease.ssh.host, reason })
  if (mode === 'public') return publicChoice('requested')
  const candidates = tailnetCandidates(lease)
  const ports = [lease.ssh.port, ...lease.ssh.fallbackPorts]
  // All at once (one timeout in all, not one per address and port); the first in order that answered wins.
  const answered = await Promise.all(
    candidates.map(async (candidate) =>
      (await Promise.all(ports.map((port) => probe(candidate.host, port, PROBE_TIMEOUT_MS)))).some(Boolean),
    ),
  )
  const reached = candidates.find((_, index) => answered[index])
  if (reached) return { network: 'tailscale', host: reached.host, reason: `tailnet_${reached.kind}` }
  if (mode === 'tailscale')
    throw new CrabboxError(
      candidates.length
        ? `network tailscale: lease ${lease.id} has no reachable tailnet address (tried ${candidates.map((c) => c.host).join(', ')})`
        : `network tailscale: lease ${lease.id} has no tailnet address${lease.details.record ? '' : ' known here'}`,
      {
        exit: 'ssh',
        code: 'tailscale_unreachable',
        hint: candidates.length
          ? 'check that this machine is on the tailnet (tailscale status), or use --network auto or public'
          : 'the lease did not join a tailnet (ask with --tailscale), or use --network auto or public',
      },
    )
  if (!candidates.length) return publicChoice('no_tailnet_address')
  progress.info('network fallback tailscale_unreachable')
  return publicChoice('tailscale_unreachable')
}

/** The lease reached through the chosen address; the choice is kept in `details.network`. */
export async function withNetwork(
  lease: Lease,
  config: Pick<Config, 'network'>,
  progress: Pick<Progress, 'info'>,
  probe?: PortProbe,
): Promise<Lease> {
  const choice = await chooseNetwork(lease, config.network, progress, probe)
  return { ...lease, ssh: { ...lease.ssh, host: choice.host }, details: { ...lease.details, network: choice, publicHost: lease.ssh.host } }
}

/**
 * The lease as a command reaches it: after a fresh Tailscale runner is ready
 * (`afterReady`), its tailnet state is read and recorded first; then the
 * address is chosen. A tailnet address gets the host keys the broker pinned
 * for the public one.
 */
export async function reachLease(
  lease: Lease,
  context: { config: Pick<Config, 'network'>; progress: Pick<Progress, 'info' | 'warn'> },
  options: { broker?: BrokerClient; afterReady?: boolean; probe?: PortProbe } = {},
): Promise<Lease> {
  let current = lease
  if (options.afterReady && needsTailscaleRefresh(current))
    current = await refreshTailscale(current, options.broker).catch((error: unknown) => {
      context.progress.warn(`could not read the runner's Tailscale state: ${(error as Error).message}`)
      return current
    })
  const reached = await withNetwork(current, context.config, context.progress, options.probe)
  const hostKeys = (reached.details.record as LeaseRecord | undefined)?.hostKeys
  if (networkOf(reached)?.network === 'tailscale' && hostKeys?.length)
    await pinHostKeys(reached.ssh.knownHostsPath, reached.ssh.host, [reached.ssh.port, ...reached.ssh.fallbackPorts], hostKeys)
  return reached
}

/** The network choice a lease carries, if one was made. */
export const networkOf = (lease: Pick<Lease, 'details'>): NetworkChoice | undefined => lease.details.network as NetworkChoice | undefined
