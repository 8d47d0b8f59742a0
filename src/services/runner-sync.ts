import { RunnersSyncResponse, type ExternalRunnerInput } from '../protocol/runners.js'
import type { TestboxRow } from '../providers/blacksmith/args.js'
import type { Lease } from '../providers/types.js'
import { brokerClient } from '../transport/broker/client.js'
import type { ServiceContext } from './context.js'

type SyncContext = Pick<ServiceContext, 'config' | 'progress'>

/**
 * External runners: `crabbox list --provider blacksmith-testbox` reports the testboxes it listed
 * to the broker (`POST /v1/runners/sync`) when one is configured, so the portal shows them next to
 * the leases. The sync replaces the caller's earlier report: testboxes no longer listed become
 * stale there (status `missing`). A sync that fails is a warning: the list itself succeeded.
 */

const SYNC_PROVIDERS = new Set(['blacksmith-testbox'])
const SYNC_TIMEOUT_MS = 15_000

/** `-` is how `testbox list` shows an empty column. */
const field = (value: string | undefined) => (value && value !== '-' ? value : undefined)

/** One listed testbox as the broker's runner input: the columns of `testbox list`. */
export function runnerInput(lease: Lease): ExternalRunnerInput {
  const row = lease.details?.row as Partial<TestboxRow> | undefined
  const input: Record<string, string> = { id: lease.id, status: field(row?.status) ?? String(lease.details?.status ?? lease.state) }
  const copy = { repo: row?.repo, workflow: row?.workflow, job: row?.job, ref: row?.ref, createdAt: row?.created }
  for (const [name, value] of Object.entries(copy)) if (field(value)) input[name] = field(value)!
  return input
}

/** Whether `crabbox list` reports this provider's rows to the broker. */
export const syncsRunners = (provider: string) => SYNC_PROVIDERS.has(provider)

/** Pushes the listed runners of `provider` to the configured broker; without one, nothing happens. */
export async function syncExternalRunners(context: SyncContext, provider: string, leases: readonly Lease[]): Promise<void> {
  if (!syncsRunners(provider)) return
  try {
    const client = brokerClient(context.config)
    if (!client) return
    const result = await client.request('POST', '/v1/runners/sync', {
      body: { provider, runners: leases.filter((lease) => lease.provider === provider).map(runnerInput) },
      schema: RunnersSyncResponse,
      timeoutMs: SYNC_TIMEOUT_MS,
    })
    const stale = result.stale.length ? `, ${result.stale.length} marked missing` : ''
    context.progress.detail(`synced ${result.runners.length} external runner(s) to the broker${stale}`)
  } catch (error) {
    context.progress.warn(`could not sync external runners to the broker: ${(error as Error).message}`)
  }
}
