import { usageError } from '../../errors.js'
import type { CheckoutArchive, DelegatedRun, Lease } from '../../providers/types.js'
import { claimingBackend, reclaimedWarning } from '../claims.js'
import { leaseBackend } from '../lease.js'
import { buildManifest, findRepoRoot } from '../sync/manifest.js'
import { tarStream } from '../sync/transfer.js'
import { interruptOnSignals, releaseQuietly } from './lifecycle.js'
import { nullRecorder } from './recorder.js'
import type { RunContext, RunFlags } from './steps/plan.js'
import { workdirFor } from './workdir.js'
import { stopwatch, type RunTiming } from './timing.js'

/**
 * `run` on a delegated provider (`blacksmith-testbox`, `islo`, `e2b`, `daytona`): the provider owns the machine and
 * the connection (and, for `delegated` sync, the copy; `archive` providers get the checkout packed
 * by crabbox), so crabbox leases (or resolves `--id`), hands it the command, passes the
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
  if (flags.checksum && provider.delegated.sync === 'archive')
    throw usageError(`${provider.name} uploads the whole checkout on every run: --checksum is not supported`, 'drop --checksum')
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
    const checkout = provider.delegated.sync === 'archive' && !flags.noSync ? await packCheckout(context, repoRoot) : undefined
    const command = stopwatch()
    const code = await provider.delegated.runDelegated(
      {
        lease,
        argv,
        shell: flags.shell,
        debug: flags.debug !== undefined,
        stdoutToStderr: flags.json ?? false,
        signal: interrupt.signal,
        workdir: workdirFor(lease.workRoot, lease.id, repoRoot),
        ...(checkout && { checkout }),
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

/** The sync manifest's files (tracked plus untracked non-ignored, minus excludes) as a gzipped tar, for `archive` providers. */
async function packCheckout(context: RunContext, repoRoot: string): Promise<CheckoutArchive> {
  const manifest = await buildManifest(repoRoot, context.config.sync)
  for (const { path, reason } of manifest.rejected) context.progress.warn(`not uploaded: ${path} (${reason})`)
  return {
    files: manifest.files,
    bytes: manifest.bytes,
    open: () => tarStream({ root: repoRoot, entries: manifest.entries, extra: () => [], extraPaths: [] }, { gzip: true }),
  }
}
