import type { ServiceContext } from './context.js'
import { CrabboxError } from '../errors.js'
import { cleanupDecision, isLeaseKeyName, providerKeyName, RUNNING_SAFETY_WINDOW_MS } from '../cloud/cloud-machines.js'
import { cloudError, type CloudBackend } from '../providers/cloud/direct.js'

export interface CleanupItem {
  id: string
  name: string
  lease?: string
  status: string
  region?: string
  reason: string
}

export interface CleanupResult {
  provider: string
  dryRun: boolean
  /** Deleted, or that would be deleted with --dry-run. */
  deleted: CleanupItem[]
  kept: CleanupItem[]
}

const backends: Record<string, () => Promise<(config: ServiceContext['config']) => CloudBackend>> = {
  hetzner: async () => (await import('../providers/hetzner.js')).hetznerBackend,
  aws: async () => (await import('../providers/aws.js')).awsBackend,
  azure: async () => (await import('../providers/azure.js')).azureBackend,
}

/**
 * Direct-mode garbage collection: deletes only machines whose labels prove
 * they are expired crabbox leases (never keep=true, never a running machine
 * inside the safety window after expiry). With a broker configured the broker
 * owns expiry, so this refuses to run.
 */
export async function cleanupMachines(context: ServiceContext, options: { dryRun: boolean; now?: Date }): Promise<CleanupResult> {
  const { config, progress } = context
  if (config.broker.url) {
    throw new CrabboxError(`cleanup refuses to run while a broker is configured (${config.broker.url})`, {
      exit: 'usage',
      hint: 'the broker deletes expired machines itself; run cleanup only for direct-mode machines (unset broker.url / CRABBOX_COORDINATOR)',
    })
  }
  const load = backends[config.provider]
  if (!load) {
    throw new CrabboxError(`cleanup works on cloud providers, not ${JSON.stringify(config.provider)}`, {
      exit: 'usage',
      hint: 'pass --provider hetzner, --provider aws or --provider azure',
    })
  }
  const backend = (await load())(config)
  const now = options.now ?? new Date()
  const result: CleanupResult = { provider: config.provider, dryRun: options.dryRun, deleted: [], kept: [] }
  try {
    progress.phase(`listing crabbox machines in ${backend.where}`)
    for (const machine of await backend.list()) {
      const decision = cleanupDecision(machine, now, RUNNING_SAFETY_WINDOW_MS)
      const item: CleanupItem = {
        id: machine.id,
        name: machine.name,
        status: machine.status,
        reason: decision.reason,
        ...(machine.labels.lease ? { lease: machine.labels.lease } : {}),
        ...(machine.region ? { region: machine.region } : {}),
      }
      if (!decision.delete) {
        result.kept.push(item)
        continue
      }
      if (!options.dryRun) {
        progress.phase(`deleting ${machine.name}`)
        const leaseId = machine.labels.lease!
        const keyName = isLeaseKeyName(machine.labels.provider_key ?? '') ? machine.labels.provider_key! : providerKeyName(leaseId)
        await backend.delete({ leaseId, id: machine.id, region: machine.region, keyName })
      }
      result.deleted.push(item)
    }
  } catch (error) {
    throw cloudError(config.provider as 'hetzner' | 'aws' | 'azure', error)
  }
  progress.done()
  return result
}
