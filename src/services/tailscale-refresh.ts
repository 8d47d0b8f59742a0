import { LeaseResponse, type LeaseRecord } from '../protocol/leases.js'
import type { TailscaleUpdateRequest } from '../protocol/tailscale.js'
import type { Lease } from '../providers/types.js'
import type { BrokerClient } from '../transport/broker/client.js'
import { openSession } from '../transport/ssh/index.js'

/**
 * After a Tailscale lease's runner is ready: read what its bootstrap recorded
 * in /var/lib/crabbox/tailscale-* (address, FQDN, exit node, state, error)
 * over SSH and, with a broker, post it to `POST /v1/leases/{id}/tailscale`,
 * so the record (and `status`, `inspect`, the portal) show the tailnet address
 * and the network choice can use it. Never reads or sends the auth key.
 */

const FIELDS = ['ipv4', 'fqdn', 'hostname', 'exit-node', 'state', 'error'] as const

/** One `name=value` line per file, each at most 256 bytes, no newlines. */
export const READ_TAILSCALE_STATE = FIELDS.map(
  (name) => `printf '${name}='; head -c 256 /var/lib/crabbox/tailscale-${name} 2>/dev/null | tr -d '\\r\\n'; echo`,
).join('; ')

/** The update the runner's files make (only what they say; empty files are left out). */
export function parseTailscaleState(text: string): TailscaleUpdateRequest {
  const values = new Map<string, string>()
  for (const line of text.split('\n')) {
    const at = line.indexOf('=')
    if (at > 0 && line.slice(at + 1).trim()) values.set(line.slice(0, at), line.slice(at + 1).trim())
  }
  const state = values.get('state')
  return {
    enabled: true,
    ...(values.has('ipv4') ? { ipv4: values.get('ipv4') } : {}),
    ...(values.has('fqdn') ? { fqdn: values.get('fqdn') } : {}),
    ...(values.has('hostname') ? { hostname: values.get('hostname') } : {}),
    ...(values.has('exit-node') ? { exitNode: values.get('exit-node') } : {}),
    ...(state === 'ready' || state === 'failed' ? { state } : {}),
    ...(state === 'failed' && values.has('error') ? { error: values.get('error') } : {}),
  }
}

/** Whether a lease asked to join a tailnet and has not reported an address yet. */
export function needsTailscaleRefresh(lease: Lease): boolean {
  const record = lease.details.record as LeaseRecord | undefined
  const metadata = record?.tailscale ?? (lease.details.tailscale as LeaseRecord['tailscale'] | undefined)
  return metadata?.enabled === true && !metadata.ipv4 && metadata.state !== 'failed'
}

/** Reads the runner's Tailscale state and records it (broker) or keeps it on the lease (direct). */
export async function refreshTailscale(lease: Lease, broker: BrokerClient | undefined): Promise<Lease> {
  const session = await openSession(lease.ssh)
  let out = ''
  try {
    await session.exec(READ_TAILSCALE_STATE, { onStdout: (chunk) => (out += chunk.toString('utf8')) })
  } finally {
    await session.close().catch(() => undefined)
  }
  const update = parseTailscaleState(out)
  if (!broker) {
    const current = (lease.details.tailscale ?? {}) as Record<string, unknown>
    return { ...lease, details: { ...lease.details, tailscale: { ...current, ...update } } }
  }
  const { lease: record } = await broker.request('POST', `/v1/leases/${encodeURIComponent(lease.id)}/tailscale`, {
    body: update,
    schema: LeaseResponse,
  })
  return { ...lease, details: { ...lease.details, record } }
}
