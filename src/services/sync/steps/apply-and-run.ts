import { startMark } from '../../../start-marks.js'
import type { ExecResult } from '../../../transport/ssh/types.js'
import { formatBytes, plural } from '../../../ui/format.js'
import { remoteFailure, syncTimeout } from '../remote-exec.js'
import { applyScript, shCommand } from '../remote-scripts.js'
import { newTag, tagDemux } from '../tag-demux.js'
import type { SyncRun } from './context.js'
import type { LocalSide } from './manifest.js'
import type { SendDecision } from './plan.js'
import { INLINE_SCRIPT_LIMIT, phaseMarks, type Sent, type loadTransfer } from './send.js'

/*
 * The folded apply and `run --id`'s command in ONE exec. When the change is
 * small enough that the whole apply script, with the tar carried inline
 * (base64 in a here-doc), fits one command argument, the script ends with
 * `<tag> ok` and the command instead of exiting: the sync and the command
 * cost one round trip more than the command alone, on the connection's ready
 * channel, and the command keeps the channel's stdin. Everything before the
 * tag is the apply's (its `mark` lines, `stale` and the probe's answer; its
 * stderr is held for its error); after it, the command's output flows. When
 * the script would not fit, the caller takes the two-exec path (fold.ts).
 */

/** The `fingerprint_remote` phase's reason when the command ran in the apply's own exec (`--timing-json`). */
export const ONE_EXEC = "checked in the same exec as the apply; the command ran in the apply's exec once the files landed"

/** The apply's stderr kept for its error (the message keeps the last 4000 characters of it). */
const HELD_STDERR_BYTES = 16_000

/** base64 grows the tar by 4/3, and each file costs a header block and padding. */
const estimate = (bytes: number, files: number) => Math.ceil(((bytes + (files + 3) * 1024) * 4) / 3)

export interface OneExec {
  /** Settles once the apply is over: the files landed (the command starts now), or `stale`; rejects when the apply failed. */
  sent: Promise<Sent>
  /** The command's result; undefined when it did not run. Rejects only when it started and its connection was lost. */
  ran: Promise<{ result: ExecResult; ms: number } | undefined>
}

/** The one exec, when `thenRun` is set and the script fits; undefined to take the two-exec path. */
export async function applyAndRun(
  run: SyncRun,
  local: LocalSide,
  decision: SendDecision,
  loading: ReturnType<typeof loadTransfer>,
): Promise<OneExec | undefined> {
  const then = run.options.thenRun
  const { plan } = decision
  if (!then || !run.options.checkAwaited || decision.cold || decision.work || decision.fullManifest) return undefined
  if (estimate(plan.sendBytes, plan.send.length) + then.command.length > INLINE_SCRIPT_LIMIT) return undefined
  const transfer = await loading
  const gzip = transfer.shouldCompress(plan.sendBytes, run.env)
  let inline: string | undefined
  if (decision.needTar) {
    const tar = transfer.tarStream({ root: local.manifest.root, entries: plan.send, extra: () => [], extraPaths: [] }, { gzip })
    const [chunks] = await Promise.all([tar.stream.toArray() as Promise<Buffer[]>, tar.done])
    inline = Buffer.concat(chunks).toString('base64')
  }
  const script = applyScript({
    workdir: run.options.workdir,
    meta: local.meta,
    fingerprint: decision.fingerprint,
    pending: plan.pending,
    remove: plan.remove,
    tar: inline === undefined ? undefined : { gzip, inline },
    fullManifest: false,
    records: plan.delta,
    expect: decision.expect,
    thenRun: true,
  })
  const tag = newTag()
  const command = shCommand(script, 'crabbox-apply-run', [tag, then.command])
  if (command.length > INLINE_SCRIPT_LIMIT) return undefined
  run.progress.phase('sync: sending')
  run.progress.detail(`sync: sending ${plural(plan.send.length, 'file')} (${formatBytes(plan.sendBytes)}) with the command`)
  return execOnce(run, decision, command, tag)
}

/** Sends the exec and splits its output at `<tag> ok` (tag-demux.ts): the apply's before, the command's after. */
function execOnce(run: SyncRun, decision: SendDecision, command: string, tag: string): OneExec {
  const then = run.options.thenRun!
  const { plan } = decision
  const sent: Sent = { fingerprint: decision.fingerprint, records: decision.records, needs: new Set() }
  const marks = phaseMarks(run, sent)
  let startedAt: number | undefined
  // Before the tag the sync's deadline and the caller's signal stop the apply; after it only the caller's.
  const stop = new AbortController()
  const onSyncAbort = () => startedAt === undefined && stop.abort(run.signal.reason)
  const onRunAbort = () => stop.abort(then.signal?.reason)
  run.signal.addEventListener('abort', onSyncAbort, { once: true })
  then.signal?.addEventListener('abort', onRunAbort, { once: true })
  if (run.signal.aborted) onSyncAbort()
  let landed!: (value: Sent) => void
  const sentPromise = new Promise<Sent>((resolve) => (landed = resolve))
  const demux = tagDemux(tag, {
    // The apply's lines go to the phase marks; its `stale` line ends the head (the probe's answer follows).
    onLine: (line) => {
      marks.onLine(line)
      return sent.stale
    },
    // The apply's stdout and stderr stay out of the command's (its stderr names a failure).
    onStart: () => {
      startedAt = performance.now()
      startMark('sync: files landed, the command starts')
      marks.finish()
      if (plan.remove.length === 0) run.timer.skip('prune', 'nothing to remove')
      if (!decision.needTar) run.timer.skip('transfer', 'nothing changed')
      landed(sent)
      then.onStart(`synced ${plural(plan.send.length, 'file')}, ${formatBytes(plan.sendBytes)}`)
    },
    onStdout: (chunk) => then.onStdout(chunk),
    onStderr: (chunk) => then.onStderr(chunk),
    heldBytes: HELD_STDERR_BYTES,
  })
  startMark('sync: apply and command sent (one exec)')
  const exec = run.session.exec(command, { env: then.env, signal: stop.signal, onStdout: demux.onStdout, onStderr: demux.onStderr })
  const finish = () => {
    run.signal.removeEventListener('abort', onSyncAbort)
    then.signal?.removeEventListener('abort', onRunAbort)
  }
  const ran = exec.then(
    (result) => {
      finish()
      if (startedAt !== undefined) return { result, ms: Math.round(performance.now() - startedAt) }
      // The command never started: the apply was stale, failed or was stopped.
      if (stop.signal.aborted) throw syncTimeout(run.signal)
      const stderr = Buffer.concat(demux.held()).toString('utf8').slice(-4000)
      if (result.code !== 0) throw remoteFailure(result, stderr, 'applying the sync')
      if (!sent.stale) throw remoteFailure(result, stderr || 'it ended before the files landed', 'applying the sync')
      sent.staleProbe = demux.after()
      landed(sent)
      return undefined
    },
    (error: unknown) => {
      finish()
      throw error
    },
  )
  // Not started: the failure is the apply's (`sent` rejects with it), and nothing ran.
  const sentOrFailed = Promise.race([sentPromise, ran.then(() => sentPromise)])
  // Started and then lost: that is the run's failure, never a reason to run the command again.
  const ranOrNothing = ran.catch((error: unknown) => {
    if (startedAt !== undefined) throw error
    return undefined
  })
  // Awaited only on some paths: a failure nobody awaits must not crash the process.
  ranOrNothing.catch(() => undefined)
  sentOrFailed.catch(() => undefined)
  return { sent: sentOrFailed, ran: ranOrNothing }
}
