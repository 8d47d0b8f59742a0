import { forwardedEnv, noSyncPrefix } from '../remote-command.js'
import { stopwatch } from '../timing.js'
import { exitCodeOf } from '../../../transport/ssh/exec.js'
import type { RunPlan, RunState } from './plan.js'
import type { LiveRun } from './session.js'
import type { SyncOutcome } from './sync.js'

/**
 * Runs the command (remote stdout and stderr straight to ours) unless the warm
 * run already did; never runs it twice. Resolves with the exit code the run
 * reports (130 / 141 when interrupted; 0 with --sync-only).
 */
export async function commandStep(plan: RunPlan, state: RunState, live: LiveRun, ran: SyncOutcome['ran']): Promise<number> {
  const { flags, interrupt } = plan
  const { remote, workdir } = live
  if (!remote) {
    plan.context.progress.info(`synced ${workdir}`)
    return 0
  }
  if (!ran) {
    live.commandStarts()
    const clock = stopwatch()
    // A native Windows command line carries its folder and environment itself.
    const prefix = flags.noSync && !live.windowsNative ? noSyncPrefix(workdir) : ''
    const env = live.windowsNative ? undefined : forwardedEnv(plan.context.config.env.allow)
    if (flags.noSync && env) flags.beforeCommand?.({ lease: live.lease, prefix, env, broker: plan.backend.broker !== undefined })
    const result = await live.session.exec(prefix + remote.command, {
      cwd: flags.noSync || live.windowsNative ? undefined : workdir,
      env,
      signal: interrupt.signal,
      stdout: live.stdout,
      stderr: live.stderr,
    })
    ran = { result, ms: clock() }
  }
  interrupt.signal.removeEventListener('abort', live.outOfBand)
  state.commandMs = ran.ms
  return interrupt.signal.aborted ? interrupt.exitCode() : exitCodeOf(ran.result)
}
