import { usageError } from '../../errors.js'
import type { DelegatedRun, Lease } from '../../providers/types.js'
import { claimingBackend, reclaimedWarning } from '../claims.js'
import { leaseBackend } from '../lease.js'
import { findRepoRoot } from '../sync/manifest.js'
import { interruptOnSignals, releaseQuietly } from './lifecycle.js'
import { manifestArchive } from './delegated-archive.js'
import { nullRecorder } from './recorder.js'
import type { RunContext, RunFlags } from './steps/plan.js'
import { stopwatch, type RunTiming } from './timing.js'
import { workdirFor } from './workdir.js'

/**
 * `run` on a delegated provider (`blacksmith-testbox`, `daytona`): the provider owns the machine, the sync
 * and the connection, so crabbox leases (or resolves `--id`), hands it the command, passes the
 * exit code through and releases what it acquired unless kept. Ctrl-C stops the remote command
 * through the provider and exits 130.
 */
export async function runDelegated(
  context: RunContext,
  provider: { name: string; delegated: DelegatedRun },
  argv: string[],
  flags: RunFlags,
): Promise<RunTiming> {
  const { progress } = context
  if (flags.syncOnly) throw usageError(`${provider.name} syncs the checkout itself: --sync-only is not supported`, 'drop --sync-only')
  if (argv.length === 0) throw usageError('no command given', 'put the command after --, e.g. `crabbox run -- npm test`')
  const total = stopwatch()
  const repoRoot = context.repoRoot ?? (await findRepoRoot(context.cwd))
  const backend = claimingBackend(await leaseBackend(context), {
    repoRoot,
    reclaim: flags.reclaim ?? false,
    onReclaim: (from, lease) => progress.warn(reclaimedWarning(lease, from)),
  })
  const interrupt = interruptOnSignals()
  let lease: Lease | undefined
  const acquired = flags.id === undefined
  try {
    lease = flags.id === undefined ? await backend.acquire({ keep: flags.keep }) : await backend.resolve(flags.id)
    progress.info(`provider=${provider.name} id=${lease.id} sync=${provider.delegated.sync}`)
    const command = stopwatch()
    // `archive` sync: crabbox builds the archive (same manifest as SSH sync), the provider unpacks it.
    const archived =
      provider.delegated.sync === 'archive'
        ? {
            workdir: workdirFor(lease.workRoot, lease.id, repoRoot),
            archive: () => manifestArchive(repoRoot, context.config.sync, progress),
          }
        : {}
    const code = await provider.delegated.runDelegated(
      {
        lease,
        argv,
        shell: flags.shell,
        debug: flags.debug !== undefined,
        stdoutToStderr: flags.json ?? false,
        signal: interrupt.signal,
        ...archived,
      },
      context,
    )
    const interrupted = interrupt.signal.aborted
    return {
      provider: provider.name,
      leaseId: lease.id,
      slug: lease.slug,
      syncMs: 0,
      syncPhases: [],
      syncSkipped: true,
      commandMs: command(),
      totalMs: total(),
      exitCode: interrupted ? interrupt.exitCode() : code,
      ...(interrupted ? { interrupted: interrupt.exitCode() === 130 ? ('signal' as const) : ('closed pipe' as const) } : {}),
    }
  } finally {
    if (lease && acquired && !flags.keep) await releaseQuietly(backend, lease, progress, nullRecorder)
    else if (lease && acquired) progress.info(`kept ${lease.id} (${lease.slug}): reuse it with --id ${lease.id}`)
    interrupt.dispose()
  }
}
