import type { RunTiming } from './timing.js'
import { directProvider, isDelegatedProvider } from '../../providers/registry.js'
import { writeJobSummary, type JobSummaryExtras } from '../../ui/ci.js'
import { summaryLine } from '../../ui/format.js'
import { commandStep } from './steps/command.js'
import { leaseStep } from './steps/lease.js'
import { newRunState, planStep, type RunContext, type RunFlags } from './steps/plan.js'
import { recordFailure, recordStep } from './steps/record.js'
import { releaseStep } from './steps/release.js'
import { sessionStep } from './steps/session.js'
import { syncStep } from './steps/sync.js'
import { startMark } from '../../start-marks.js'
import { holdExit } from '../../exit-hold.js'

export type { RunContext, RunFlags } from './steps/plan.js'
export { workdirFor } from './steps/session.js'

/**
 * `crabbox run`: plan → lease (wait for SSH) → session → sync → command
 * (remote stdout and stderr straight to ours) → record → release unless kept.
 * Each step is a function under `steps/`. Resolves with the timing; the caller
 * exits with `exitCode`.
 *
 * Guarantees: once a lease exists it is released on any failure (unless
 * kept); a fresh non-kept lease whose runner never reaches SSH is replaced
 * once (the lease step); the command never runs twice; an interrupt is
 * recorded and exits 130 (141 for a closed stdout).
 */
/** What the CI job summary shows beyond a run's timing, kept until reportTiming writes it. */
const summaryExtras = new WeakMap<RunTiming, JobSummaryExtras>()

export async function runPipeline(context: RunContext, argv: string[], flags: RunFlags): Promise<RunTiming> {
  if (isDelegatedProvider(context.config.provider)) {
    const provider = await directProvider(context.config.provider)
    // Loaded only for delegated providers: the usual path never reads it.
    const { runDelegated } = await import('./delegated.js')
    if (provider.delegated) return runDelegated(context, { name: provider.name, delegated: provider.delegated }, argv, flags)
  }
  const plan = await planStep(context, argv, flags)
  startMark('run: plan')
  const state = newRunState()
  try {
    state.held = await leaseStep(plan, state)
    startMark('run: lease')
    const live = await sessionStep(plan, state, state.held.lease)
    startMark('run: session')
    const ran = await syncStep(plan, state, live)
    startMark('run: sync')
    const exitCode = await commandStep(plan, state, live, ran)
    startMark('run: remote command')
    const timing = await recordStep(plan, state, live.lease, exitCode)
    startMark('run: recorded')
    const broker = context.config.broker?.url
    summaryExtras.set(timing, {
      results: state.results,
      portalUrl: broker && timing.runId ? `${broker.replace(/\/+$/, '')}/portal/runs/${encodeURIComponent(timing.runId)}` : undefined,
    })
    return timing
  } catch (error) {
    await recordFailure(plan, state, error)
    throw error
  } finally {
    // The sync's bookkeeping for the next run, written while the command ran, may outlast it:
    // the exit code need not wait for it, the process does (src/exit-hold.ts).
    if (state.sync.saved) holdExit(state.sync.saved)
    await releaseStep(plan, state)
  }
}

/** Prints the timing as `--timing-json` asks (one JSON line) or the human summary (not with --quiet), both on stderr; the CI's job summary. */
export function reportTiming(timing: RunTiming, asJson: boolean, quiet = false): void {
  if (asJson || !quiet) process.stderr.write(`${asJson ? JSON.stringify(timing) : summaryLine(timing)}\n`)
  writeJobSummary(timing, process.env, summaryExtras.get(timing))
}
