import type { GitContext } from '../manifest.js'
import { PROBE_SCRIPT, parseProbe, probeArgs, type Probe } from '../probe-protocol.js'
import { parseRecords, type RemoteRecord } from '../records.js'
import { runRemote } from '../remote-exec.js'
import { shCommand } from '../remote-scripts.js'
import type { Probed } from '../guard.js'
import type { SyncRun } from './context.js'

/** A probe in flight (or already answered), with the arguments it was asked with. */
export interface PendingProbe {
  key: string
  answer: Promise<Probe>
}

const keyOf = (run: SyncRun, known: string[], git: GitContext | undefined) =>
  probeArgs(run.options.workdir, git, run.config, known).join('\0')

/** Starts the probe round trip; its time is the `fingerprint_remote` phase. */
export function startProbe(run: SyncRun, known: string[], git: GitContext | undefined): PendingProbe {
  const args = probeArgs(run.options.workdir, git, run.config, known)
  const started = performance.now()
  const answer = runRemote(run.session, shCommand(PROBE_SCRIPT, 'crabbox-probe', args), {
    signal: run.signal,
    what: 'checking the workdir',
  }).then((stdout) => {
    run.timer.add('fingerprint_remote', performance.now() - started)
    return parseProbe(stdout)
  })
  answer.catch(() => {})
  return { key: args.join('\0'), answer }
}

/** The answer the warm-run guard already got in its exec. */
export function probeAnswered(run: SyncRun, known: string[], git: GitContext | undefined, probed: Probed): PendingProbe {
  return { key: keyOf(run, known, git), answer: Promise.resolve(parseProbe(probed.stdout)) }
}

/**
 * The probe for a sync that first tries the folded apply (steps/fold.ts): it
 * starts only when something asks for its answer, so a fold that goes through
 * sends nothing but its own exec. `answered` takes the answer a stale apply
 * printed instead.
 */
export function lazyProbe(run: SyncRun, known: string[], git: GitContext | undefined): PendingProbe & { answered(stdout: Buffer): void } {
  let answer: Promise<Probe> | undefined
  return {
    key: keyOf(run, known, git),
    get answer() {
      return (answer ??= startProbe(run, known, git).answer)
    },
    answered(stdout) {
      answer ??= Promise.resolve(parseProbe(stdout))
    },
  }
}

/** The probe for this git context: the pending one when it asked the same, else a new one. */
export function probeFor(run: SyncRun, known: string[], pending: PendingProbe | undefined, git: GitContext | undefined): PendingProbe {
  return pending && pending.key === keyOf(run, known, git) ? pending : startProbe(run, known, git)
}

export interface RunnerState {
  probe: Probe
  /** What the runner holds according to its own record; empty with `--checksum`, which trusts nothing. */
  remote: Map<string, RemoteRecord>
}

/** Waits for the probe's answer and reads the runner's record (from our copy when the runner's fingerprint is one we kept). */
export async function readRunner(run: SyncRun, pending: PendingProbe): Promise<RunnerState> {
  const probe = await pending.answer
  if (run.options.checksum) return { probe, remote: new Map() }
  const cached = probe.known && probe.fingerprint ? await run.sent.read(probe.fingerprint) : undefined
  return { probe, remote: cached?.remote ?? parseRecords(probe.records) }
}
