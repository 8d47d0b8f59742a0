import { sendBundle } from '../git-seed.js'
import type { Probe } from '../probe-protocol.js'
import type { SyncRun } from './context.js'
import type { LocalSide } from './manifest.js'
import type { SendDecision } from './plan.js'
import type { Sent } from './send.js'

/**
 * The runner could not fetch the history it needs from origin (it printed
 * `need-bundle` / `need-base`): send it as a git bundle. Failures are warnings.
 */
export async function gitSeedStep(run: SyncRun, local: LocalSide, decision: SendDecision, probe: Probe, sent: Sent): Promise<void> {
  const { config, timer, options } = run
  const git = local.manifest.git
  const work = decision.work
  if (git && work && (sent.needs.has('need-bundle') || sent.needs.has('need-base'))) {
    run.progress.phase('sync: sending git history')
    const bundleWarnings = await timer.phase('git_seed', () =>
      sendBundle(run.session, {
        repoRoot: options.repoRoot,
        workdir: options.workdir,
        meta: local.meta,
        fingerprint: run.useFingerprint ? sent.fingerprint : '',
        local: git,
        remote: probe.git!,
        needHead: sent.needs.has('need-bundle'),
        needBase: sent.needs.has('need-base'),
        signal: run.signal,
        onBytes: (bytes, totalBytes) => run.progress.transfer({ bytes, totalBytes, files: 0, totalFiles: 0 }),
      }),
    )
    for (const message of bundleWarnings) run.warn(message)
  }
  if (!work) {
    const reason = !config.gitSeed
      ? 'sync.gitSeed is off'
      : !git
        ? 'not a git checkout'
        : !git.head
          ? 'no commits yet'
          : 'runner git is current'
    timer.skip('git_seed', reason)
    timer.skip('hydrate', reason)
  }
}
