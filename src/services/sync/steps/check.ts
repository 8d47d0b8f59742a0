import { checkUnchanged, WATCHED, type Moved, type Unchanged } from '../snapshot.js'
import { startMark } from '../../../start-marks.js'
import type { SyncRun } from './context.js'
import { probeAnswered, startProbe, type PendingProbe } from './probe.js'

export interface Checked {
  /** The checkout provably unchanged since its last fingerprint (no manifest pass needed for git). */
  unchanged?: Unchanged
  /** Only git's listings moved since the snapshot: the manifest can be the stored one plus those paths. */
  moved?: Moved
  /** Fingerprints whose record we kept a copy of (the probe's arguments). */
  known: string[]
  /** The probe, when it could start before the manifest. */
  probe?: PendingProbe
  /** The runner holds that fingerprint: nothing to do. */
  skip: boolean
  /** No probe was started: the folded apply (steps/fold.ts) goes first and answers it when stale. */
  fold?: boolean
}

/**
 * The local unchanged check, with the runner round trip overlapping it. When
 * the checkout is unchanged and the runner holds its fingerprint, the sync is
 * over: no manifest pass at all.
 */
export async function checkStep(run: SyncRun): Promise<Checked> {
  const { options, timer } = run
  const check = options.check ?? checkUnchanged(options.repoRoot, run.config, options)
  run.watch = check.watch
  const [snapshot, known] = await Promise.all([check.snapshot, run.sent.known()])
  if (options.probed) {
    const [unchanged, moved] = await Promise.all([check.unchanged, check.moved])
    timer.add('manifest', options.probed.checkMs)
    timer.add('fingerprint_remote', options.probed.ms)
    return { unchanged, moved, known, probe: probeAnswered(run, known, (unchanged ?? moved?.snapshot)?.git, options.probed), skip: false }
  }
  if (!snapshot) return { known, skip: false }
  const verdict = Promise.all([check.unchanged, check.moved])
  // The caller already waited for the check (the warm run did) and it found a small change: no
  // probe exec, the folded apply goes first. Else the runner round trip overlaps the check, with
  // the HEAD the check is about to confirm.
  const fold = Boolean(options.checkAwaited && known.length > 0 && (await verdict)[1])
  const probe = fold ? undefined : startProbe(run, known, snapshot.git)
  const [unchanged, moved] = await timer.phase('manifest', () => verdict)
  startMark(moved?.named ? `sync: check (the agent named ${moved.named.length} path(s))` : 'sync: check')
  if (unchanged && probe && (await probe.answer).fingerprint === unchanged.fingerprint) {
    timer.skip('fingerprint', 'checkout unchanged since its last fingerprint')
    if (unchanged.watched) timer.note('manifest', WATCHED)
    return { unchanged, known, probe, skip: true }
  }
  return { unchanged, moved, known, probe, skip: false, fold }
}
