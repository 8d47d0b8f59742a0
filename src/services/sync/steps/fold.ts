import { randomBytes } from 'node:crypto'
import { formatBytes, plural } from '../../../ui/format.js'
import type { SyncResult } from '../index.js'
import type { SyncPlan } from '../prune.js'
import { PROBE_SCRIPT, probeArgs } from '../probe-protocol.js'
import { startMark } from '../../../start-marks.js'
import type { Checked } from './check.js'
import { syncedResult, type SyncRun } from './context.js'
import { hashStep, type LocalSide } from './manifest.js'
import { COMPACT_MIN_BYTES, planStep } from './plan.js'
import { rememberStep } from './remember.js'
import { sendStep, type loadTransfer } from './send.js'
import { applyAndRun, ONE_EXEC } from './apply-and-run.js'

/** The `fingerprint_remote` phase's reason when the command ran pipelined with the apply (`--timing-json`). */
export const PIPELINED = 'checked in the same exec as the apply; the command ran beside it once the files landed'

/** Above this many bytes to send, the probe's round trip is small next to the transfer: not worth guessing. */
const FOLD_MAX_BYTES = 1024 * 1024

/**
 * The probe folded into the send. After a small change (the unchanged check
 * found only git's listings moved), the runner most likely holds what this
 * machine sent last: plan against that record and send at once. The apply
 * script first checks that the runner holds that fingerprint, HEAD and base
 * (and that its appended record is not due for compaction); if not, it reads
 * and drops the tar, prints `stale` and changes nothing, and the caller takes
 * the probe's answer (its exec started with the check) as before. One round
 * trip instead of two. After the warm run's check no probe exec is started
 * at all: the stale apply runs the probe itself and its answer follows the
 * `stale` line. Undefined when not applicable or stale.
 */
export async function foldedSync(
  run: SyncRun,
  local: LocalSide,
  checked: Checked,
  transfer: ReturnType<typeof loadTransfer>,
): Promise<SyncResult | undefined> {
  const expected = checked.known[0]
  if (!checked.moved || run.options.probed || !run.useFingerprint || !expected) return undefined
  const stored = await run.sent.read(expected)
  if (!stored) return undefined
  const { manifest } = local
  const git = manifest.git
  const remoteGit = run.config.gitSeed && git?.head ? { missing: false, head: git.head, hasHead: true, base: git.baseSha } : undefined
  const { remote } = stored
  startMark('sync: last record read')
  const hashed = await hashStep(run, manifest, remote)
  const decision = planStep({
    manifest,
    hashed,
    remote,
    probe: { fingerprint: expected, git: remoteGit, sizes: { base: stored.size, delta: 0 } },
    config: run.config,
    useFingerprint: true,
    env: run.env,
  })
  startMark('sync: fingerprint and plan')
  // Nothing to send (the change was undone) still needs the runner's word; so does anything large or git work.
  if (decision.skip || decision.plan.sendBytes > FOLD_MAX_BYTES || decision.fullManifest || decision.work) return undefined
  const deltaBytes = decision.plan.delta.reduce((n, record) => n + Buffer.byteLength(record), 0)
  const expect = {
    fingerprint: expected,
    git: remoteGit && { head: remoteGit.head, baseRef: git?.baseRef, baseSha: git?.baseSha },
    maxDelta: Math.max(0, Math.floor(Math.max(COMPACT_MIN_BYTES, stored.size / 4) - deltaBytes)),
    // No probe exec beside this one (its start waits for someone to ask): a stale apply answers it.
    probe: local.probe.answered
      ? { script: PROBE_SCRIPT, args: probeArgs(run.options.workdir, git, run.config, checked.known) }
      : undefined,
  }
  for (const message of decision.warnings) run.warn(message)
  // Small enough to carry the tar in the script: the apply and the command are one exec.
  const oneExec = await applyAndRun(run, local, { ...decision, expect }, transfer)
  const pipelined = oneExec ? undefined : pipelineCommand(run, local, decision.plan)
  const sent = await (oneExec?.sent ??
    sendStep(run, local, { ...decision, expect: { ...expect, marker: pipelined?.marker } }, transfer).catch((error: unknown) => {
      pipelined?.cancel()
      throw error
    }))
  startMark('sync: applied')
  const commandRan = oneExec?.ran ?? pipelined?.ran
  if (sent.stale) {
    // The apply changed nothing and told the command beside it so: it did not run.
    await commandRan
    if (sent.staleProbe) local.probe.answered?.(sent.staleProbe)
    return undefined
  }
  run.timer.add('fingerprint_remote', 0, { reason: 'checked in the same exec as the apply' })
  const result = syncedResult(run, decision.plan, rememberStep(run, manifest, sent, hashed))
  const ran = await commandRan
  if (ran) run.timer.note('fingerprint_remote', oneExec ? ONE_EXEC : PIPELINED)
  return { ...result, ran }
}

/**
 * `run --id`'s command, started beside the apply exec: it waits on the runner
 * for the apply's marker and runs once the files landed, so the sync costs
 * one round trip more than the command alone. Its result is undefined when it
 * did not run (the caller then runs it as usual).
 */
function pipelineCommand(run: SyncRun, local: LocalSide, plan: SyncPlan) {
  const then = run.options.thenRun
  if (!then || !run.options.checkAwaited) return undefined
  const marker = `sync-applied.${randomBytes(8).toString('hex')}`
  const stop = new AbortController()
  const signal = then.signal ? AbortSignal.any([then.signal, stop.signal]) : stop.signal
  const synced = `synced ${plural(plan.send.length, 'file')}, ${formatBytes(plan.sendBytes)}`
  let started = false
  const command = {
    ...then,
    signal,
    onStart: () => {
      started = true
      then.onStart(synced)
    },
  }
  const ran = import('../guard.js')
    .then(({ runAfterApply }) => runAfterApply(run.session, run.options.workdir, `${local.meta}/${marker}`, command))
    // Not started: the caller runs it the usual way. Started and then failed (the connection
    // lost mid-command): that is the run's failure, never a reason to run the command again.
    .catch((error: unknown) => {
      if (started) throw error
      return undefined
    })
  // Awaited only on some paths: a failure nobody awaits must not crash the process.
  ran.catch(() => undefined)
  return {
    marker,
    ran,
    /** The apply failed: the command never runs; stop waiting for its marker. */
    cancel: () => stop.abort('SIGTERM'),
  }
}
