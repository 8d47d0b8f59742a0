import type { Daytona, Sandbox } from '@daytonaio/sdk'
import type { Config } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import { leaseKeyDir } from '../../paths.js'
import { defaultSlug } from '../../protocol/ids.js'
import { pickByIdOrSlug } from '../pick.js'
import type { AcquireRequest, DirectProvider, Lease, ProviderContext } from '../types.js'
import { api, daytonaClient, daytonaError, isNotFound } from './client.js'
import { runDaytona } from './run.js'
import { openSshAccess } from './ssh.js'
import { undialledSsh } from '../undialled.js'

export const DAYTONA = 'daytona'

/** How long a new sandbox gets to reach `started`. */
const READY_TIMEOUT_S = 300
/** The label every crabbox sandbox carries; `list` asks for it. */
const LABEL = 'crabbox'

type SandboxInfo = Pick<Sandbox, 'id' | 'name' | 'state' | 'labels'>

function sandboxLease(sandbox: SandboxInfo, config: Config): Lease {
  const dir = leaseKeyDir(sandbox.id)
  const state = String(sandbox.state ?? 'unknown')
  return {
    id: sandbox.id,
    slug: defaultSlug(sandbox.id),
    provider: DAYTONA,
    // Crabbox reaches the sandbox through the Daytona API only (no SSH of its own).
    ssh: undialledSsh(dir),
    workRoot: config.daytona.workRoot,
    state: state === 'started' ? 'active' : state,
    keep: sandbox.labels?.['crabbox-keep'] === 'true',
    details: { delegated: true, name: sandbox.name, daytonaState: state, labels: sandbox.labels },
  }
}

/** Deletes the sandbox called `idOrName`; one that is already gone is fine. */
async function remove(daytona: Daytona, idOrName: string): Promise<void> {
  let sandbox: Sandbox
  try {
    sandbox = await daytona.get(idOrName)
  } catch (error) {
    if (isNotFound(error)) return
    throw daytonaError(`get ${idOrName}`, error)
  }
  // Every SSH access token of the sandbox (a printed `crabbox ssh` line's too): without a token the API revokes them all.
  await sandbox.revokeSshAccess(undefined as unknown as string).catch(() => undefined)
  await api(`delete ${idOrName}`, () => sandbox.delete())
}

/**
 * A sandbox from `daytona.snapshot`, named after the lease and labelled for crabbox, auto-stopped
 * after the idle timeout. A create or wait that fails deletes whatever was made under that name.
 */
async function acquire(request: AcquireRequest, context: ProviderContext): Promise<Lease> {
  const { config, progress } = context
  const daytona = await daytonaClient(config)
  progress.phase('daytona sandbox create')
  const labels = { [LABEL]: 'true', 'crabbox-lease': request.leaseId, 'crabbox-keep': String(request.keep) }
  let sandbox: Sandbox
  try {
    sandbox = await daytona.create(
      {
        name: request.leaseId,
        snapshot: config.daytona.snapshot,
        user: config.daytona.user,
        labels,
        autoStopInterval: Math.max(1, Math.ceil(request.idleTimeoutSeconds / 60)),
      },
      { timeout: READY_TIMEOUT_S },
    )
  } catch (error) {
    progress.fail()
    await remove(daytona, request.leaseId).catch((cleanup: Error) =>
      progress.warn(`could not delete sandbox ${request.leaseId}: ${cleanup.message}`),
    )
    throw daytonaError('sandbox create', error, 'provisioning')
  }
  progress.done(`sandbox ${sandbox.id} started`)
  return sandboxLease(sandbox, config)
}

async function list(context: ProviderContext): Promise<Lease[]> {
  const daytona = await daytonaClient(context.config)
  const leases: Lease[] = []
  try {
    for await (const sandbox of daytona.list({ labels: { [LABEL]: 'true' }, limit: 100 }))
      leases.push(sandboxLease(sandbox, context.config))
  } catch (error) {
    throw daytonaError('list', error)
  }
  return leases
}

async function resolve(idOrSlug: string, context: ProviderContext): Promise<Lease> {
  const leases = await list(context)
  const found = leases.find((lease) => lease.id === idOrSlug || lease.details.name === idOrSlug)
  if (found) return found
  try {
    return pickByIdOrSlug(leases, idOrSlug, DAYTONA)
  } catch (error) {
    if (!(error instanceof CrabboxError)) throw error
    // A sandbox ID or name names itself even when it lacks crabbox's label.
    const daytona = await daytonaClient(context.config)
    const sandbox = await daytona.get(idOrSlug).catch(() => undefined)
    if (sandbox) return sandboxLease(sandbox, context.config)
    throw error
  }
}

/** `daytona`: Daytona sandboxes through the official SDK; `run` goes through the toolbox API. */
export const daytonaProvider: DirectProvider = {
  name: DAYTONA,
  readiness: 'managed',
  delegated: { sync: 'archive', runDelegated: runDaytona },
  acquire,
  resolve,
  async release(lease, context) {
    await remove(await daytonaClient(context.config), lease.id)
  },
  list,
  /** `crabbox ssh`: a Daytona SSH access token for the sandbox, revoked when the command ends. */
  async sshAccess(lease, context) {
    const daytona = await daytonaClient(context.config)
    const sandbox = await api(`get ${lease.id}`, () => daytona.get(lease.id))
    const access = await openSshAccess(sandbox, context.config)
    // The SSH user is the token itself: `ssh --print` leaves it out unless --show-secret.
    return { target: access.target, revoke: access.revoke, secretUser: true }
  },
}
