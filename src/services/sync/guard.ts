import type { Config } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import { startMark } from '../../start-marks.js'
import type { ExecResult, SshSession } from '../../transport/ssh/types.js'
import { SentManifests } from './sent-records.js'
import { PROBE_SCRIPT, probeArgs } from './probe-protocol.js'
import { META_FILES, SCRIPT_EXIT, shCommand } from './remote-scripts.js'
import { WATCHED, type UnchangedCheck } from './snapshot.js'
import { tagDemux, newTag } from './tag-demux.js'
import { Timer, type SyncPhase } from './timer.js'

/*
 * The warm run: a reused runner most likely holds this checkout already, and
 * the local check (snapshot.ts) says the checkout did not change since its
 * fingerprint. Then one exec compares that fingerprint on the runner and, only
 * when it matches, runs the command: one round trip in all. Kept apart from
 * the sync engine, which only loads when something must travel.
 */

export interface GuardedCommand {
  /** For the runner's shell, run in the workdir. */
  command: string
  env?: Record<string, string>
  /** Aborting signals the remote command (the sync timeout never applies to it). */
  signal?: AbortSignal
  onStdout: (chunk: Buffer) => void
  onStderr: (chunk: Buffer) => void
  /**
   * The runner confirmed the fingerprint; the command starts now. `synced`: it
   * ran right after a pipelined apply instead (what was synced, for the record).
   */
  onStart: (synced?: string) => void
}

/** The runner's answer to the probe, when the guard found its fingerprint differs. */
export interface Probed {
  stdout: Buffer
  /** The wait for the local check (its `manifest` phase) and the exec's round trip. */
  checkMs: number
  ms: number
}

export type WarmRun =
  /** The command ran; `syncMs` is the local check (the round trip belongs to the command). */
  | { ran: { result: ExecResult; ms: number }; phases: SyncPhase[]; syncMs: number }
  /** The runner holds something else: sync with this probe answer, then run. */
  | { probed: Probed }
  /** The checkout changed (or was never fingerprinted): a normal sync. */
  | undefined

/**
 * `<tag> ok` then the command (in the workdir) when the runner's fingerprint
 * equals $1, else `<tag> stale` and the probe. The tag is random, so no output
 * can fake it, and the command only ever starts after `ok`.
 */
const GUARD_SCRIPT = `fp=$1 tag=$2 cmd=$3; shift 3; wd=$1 meta=$2 cur=
{ cd -- "$wd" && read -r cur < "$meta/${META_FILES.fingerprint}"; } 2>/dev/null
if [ -n "$cur" ] && [ "$cur" = "$fp" ]; then echo "$tag ok"; eval "$cmd"; exit; fi
echo "$tag stale"
`

export async function runIfUnchanged(options: {
  repoRoot: string
  workdir: string
  config: Config['sync']
  session: Pick<SshSession, 'exec'>
  check: Pick<UnchangedCheck, 'unchanged'>
  run: GuardedCommand
  startedAt?: number
}): Promise<WarmRun> {
  const timer = new Timer(options.startedAt)
  const known = SentManifests.for(options.repoRoot).known()
  const unchanged = await timer.phase('manifest', () => options.check.unchanged)
  startMark('sync: local check')
  if (!unchanged) return undefined
  if (unchanged.watched) timer.note('manifest', WATCHED)
  const run = options.run
  const args = probeArgs(options.workdir, unchanged.git, options.config, await known)
  const checked = timer.result()
  const { verdict, result, after, heldStderr, ms } = await taggedExec(
    options.session,
    GUARD_SCRIPT + PROBE_SCRIPT,
    [unchanged.fingerprint],
    args,
    run,
  )
  if (verdict === 'ok') {
    timer.skip('fingerprint', 'checkout unchanged since its last fingerprint')
    timer.add('fingerprint_remote', 0, { reason: 'checked in the same exec as the command' })
    for (const name of ['prune', 'transfer', 'git_seed', 'hydrate', 'finalize']) timer.skip(name, 'fingerprint matches')
    return { ran: { result, ms }, phases: timer.result().phases, syncMs: checked.totalMs }
  }
  if (verdict === undefined || result.code !== 0) {
    // The command never started (it only runs after `ok`), so nothing was run twice either.
    const detail =
      Buffer.concat(heldStderr).toString('utf8').trim().slice(-4000) ||
      (result.code === null ? `killed by ${result.signal}` : `exit ${result.code}`)
    const what = run.signal?.aborted
      ? 'interrupted while checking the workdir'
      : result.code === SCRIPT_EXIT.workdir
        ? 'the workdir could not be created'
        : 'checking the workdir failed'
    throw new CrabboxError(`sync: ${what} on the runner: ${detail}`, {
      exit: 'sync',
      code: 'sync_failed',
      hint: 'Run again; if it keeps failing, check disk space and permissions on the runner.',
    })
  }
  return { probed: { stdout: after, checkMs: checked.phases.find((phase) => phase.name === 'manifest')?.ms ?? 0, ms } }
}

/**
 * Waits on the runner until the apply exec beside it wrote its marker
 * (`$meta/<marker>`: ok, stale or fail), then `<tag> ok` and the command when
 * it says ok, else `<tag> stale`. Args: tag, command, workdir, marker path
 * relative to it. Gives up after 60 s.
 */
const AFTER_APPLY_SCRIPT = `tag=$1 cmd=$2; shift 2; wd=$1 m=$2 i=0 st=
cd -- "$wd" 2>/dev/null || { echo "$tag stale"; exit 0; }
while [ ! -s "$m" ]; do
  i=$((i + 1)); [ $i -le 6000 ] || { echo "$tag stale"; exit 0; }
  sleep 0.01 2>/dev/null || sleep 1
done
read -r st < "$m"; rm -f -- "$m"
if [ "$st" = ok ]; then echo "$tag ok"; eval "$cmd"; exit; fi
echo "$tag stale"
`

/**
 * The command pipelined with a folded apply (steps/fold.ts): started at the
 * same time as the apply's exec, it runs on the runner as soon as the apply
 * wrote `ok` to `marker`, so the sync and the command cost one round trip
 * more than the command alone. Undefined when the apply did not land (the
 * command did not run; the caller runs it the usual way).
 */
export async function runAfterApply(
  session: SshSession,
  workdir: string,
  marker: string,
  run: GuardedCommand,
): Promise<{ result: ExecResult; ms: number } | undefined> {
  const { verdict, result, ms } = await taggedExec(session, AFTER_APPLY_SCRIPT, [], [workdir, marker], run)
  return verdict === 'ok' ? { result, ms } : undefined
}

/**
 * Runs `script` with `tag command ...args` where `before` go first (`fp` for
 * the guard); the command's output is passed on only after `<tag> ok`.
 * What follows `<tag> stale` is kept in `after`.
 */
async function taggedExec(session: Pick<SshSession, 'exec'>, script: string, before: string[], args: string[], run: GuardedCommand) {
  const tag = newTag()
  // Anything ahead of the tag came from the runner's shell start-up, not the command: passed on.
  const passOn = (head: Buffer) => {
    if (head.length > 0) run.onStdout(head)
  }
  const demux = tagDemux(tag, {
    onStart: (head, held) => {
      passOn(head)
      run.onStart()
      for (const chunk of held) run.onStderr(chunk)
    },
    onStale: passOn,
    onStdout: (chunk) => run.onStdout(chunk),
    onStderr: (chunk) => run.onStderr(chunk),
  })
  const sent = performance.now()
  const result = await session.exec(shCommand(script, 'crabbox-run', [...before, tag, run.command, ...args]), {
    env: run.env,
    signal: run.signal,
    onStdout: demux.onStdout,
    onStderr: demux.onStderr,
  })
  return { verdict: demux.verdict(), result, after: demux.after(), heldStderr: demux.held(), ms: Math.round(performance.now() - sent) }
}
