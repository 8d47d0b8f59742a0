import { readdirSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import { heldWork, holdExit } from './exit-hold.js'
import { CONFIG_FLAGS, type FastCommand, fastCommand, truthy } from './fast-argv.js'
import { startMark, startTrace } from './start-marks.js'
import { spareNumber } from './transport/ssh/agent-folder.js'

export { fastCommand, type FastCommand } from './fast-argv.js'

/**
 * The fast path: the hot commands a coding agent calls hundreds of times an hour,
 * `crabbox ssh --id X -- <cmd>` and `crabbox run --id X [--no-sync] -- <cmd>`, start here
 * instead of in oclif (bin/run.js asks `fastCommand`). The argv is read by a small table
 * in src/fast-argv.ts; anything it does not know (`--help`, `--json`, any other flag, a flag given
 * twice, a missing command, a user plugin, `CRABBOX_NO_FAST_PATH=1`) answers undefined and
 * the full CLI runs instead, so flags added to these commands later keep working there.
 * `runFast` then does what the oclif commands do (src/commands/ssh.ts and run.ts): load
 * config, call the same service, fail through the same printer (src/failure.ts).
 * Everything heavy is imported lazily, so this file pulls in neither oclif nor the services.
 */

const SSH_MODULES = [() => import('./services/ssh.js'), () => import('./services/lease.js'), () => import('./transport/ssh/index.js')]
const RUN_MODULES = [() => import('./services/run/pipeline.js'), () => import('./transport/ssh/index.js')]
/** Sync's unchanged check and guard: only a run that syncs loads them. */
const SYNC_MODULES = [() => import('./services/sync/snapshot.js'), () => import('./services/sync/guard.js')]

type Loaded = Awaited<ReturnType<typeof import('./config/load.js').loadConfig>>

/** The command's config, read ahead (`readConfig`): never rejects, its warnings are printed when it is used. */
export interface ConfigAhead {
  /** `lane`: in a spare worker, the stamps for the agent lane (services/lane.ts), taken before the config was read. */
  loaded: Promise<{ config?: Loaded; error?: unknown; lane?: LaneStamps }>
  warnings: string[]
}

type LaneStamps = import('./services/lane.js').LaneStamps

/**
 * Starts reading the command's config (files, env, its config flags; the cwd and environment
 * must already be the command's). The spare worker calls it as soon as it has set them, before
 * it binds the command's streams: reading has no side effects.
 */
export function readConfig(fast: FastCommand, laneBuild?: string): ConfigAhead {
  const warnings: string[] = []
  const configFlags = Object.fromEntries(Object.entries(fast.flags).filter(([name]) => CONFIG_FLAGS.has(name)))
  const cwd = process.cwd()
  let lane: LaneStamps | undefined
  const loaded = Promise.all([import('./config/load.js'), laneBuild === undefined ? undefined : import('./services/lane.js')])
    .then(([{ loadConfig }, sshLane]) => {
      lane = sshLane?.stampLane(fast, laneBuild as string)
      return loadConfig({ cwd, flags: configFlags, warn: (message) => warnings.push(message) })
    })
    .then(
      (config) => ({ config, lane }),
      (error: unknown) => ({ error }),
    )
  return { loaded, warnings }
}

/**
 * Runs a command `fastCommand` accepted the way BaseCommand and the command class would:
 * config with the command's config flags on top, the same service, the same failure
 * output and exit code. Resolves on success (the process then ends as oclif's does);
 * on failure it exits with the command's exit code. `warmAt`: in the agent's spare worker,
 * when it got the command (start-up marks count from there); `ahead`: its config, read meanwhile.
 */
export async function runFast(fast: FastCommand, warmAt?: number, ahead?: ConfigAhead): Promise<void> {
  delete process.env.CRABBOX_REDIRECTED // oclif drops it before every command
  startTrace(truthy(process.env.CRABBOX_TRACE_START), warmAt)
  const mark = startMark
  mark(warmAt === undefined ? 'node and bin/run.js' : 'warm worker: env, cwd, streams')
  const { flags } = fast
  const debug = flags.debug === true
  // Every module the command will need starts loading now, side by side, instead of each
  // import waiting for the code that asks for it (one file read after another).
  const later = fast.command === 'ssh' ? SSH_MODULES : flags['no-sync'] ? RUN_MODULES : [...RUN_MODULES, ...SYNC_MODULES]
  for (const load of later) load().catch(() => {})
  const reading = ahead ?? readConfig(fast)
  const [{ serviceContext }, { createProgress }] = await Promise.all([import('./services/context.js'), import('./ui/progress.js')])
  mark('modules')
  const progress = createProgress({ plain: false, quiet: flags.quiet === true })
  let exitCode: number | undefined
  try {
    const cwd = process.cwd()
    const read = await reading.loaded
    for (const message of reading.warnings) progress.warn(message)
    if (!read.config) throw read.error
    const loaded = read.config
    const { config, files, repoRoot } = loaded
    const context = serviceContext({ config, progress, json: false, cwd, repoRoot, configFiles: files })
    mark('config')
    // The agent lane: a route for the next such command, when nothing was said about the config.
    const lane = reading.warnings.length === 0 ? read.lane : undefined
    if (fast.command === 'ssh') {
      const { sshCommand } = await import('./services/ssh.js')
      const hooks: SessionHooks = lane
        ? {
            beforeCommand: (resolved, prefix) =>
              fileLater((lanes) => lanes.fileLaneRoute(lane, { resolved, prefix, looked: loaded.looked, provider: config.provider })),
          }
        : {}
      await sshCommand(context, { id: (flags.id as string | undefined) ?? fast.lease }, fast.words, hooks)
    } else {
      await fastRun(context, fast, lane && ((at) => fileLater((lanes) => lanes.fileRunLaneRoute(lane, at, loaded))))
    }
  } catch (error) {
    exitCode = await failed(error as Error, progress, debug)
  } finally {
    progress.done()
  }
  mark('command')
  // In a spare worker a `run` hands its exit code over now (process.exit is the worker's), and
  // the worker finishes the held bookkeeping before it exits; elsewhere the process waits for it.
  if (warmAt !== undefined && fast.command === 'run') process.exit(exitCode ?? 0)
  await heldWork()
  if (exitCode !== undefined) process.exit(exitCode)
}

/**
 * Files the agent lane's route (services/lane.ts) beside the command, which does not wait for
 * it; the process does (src/exit-hold.ts), so a run whose exit code went out first still files it.
 * `ssh` and `run` (a `--no-sync` command, or a warm run with nothing to sync) call it before their command.
 */
function fileLater(file: (lanes: typeof import('./services/lane.js')) => Promise<void>): void {
  holdExit(import('./services/lane.js').then(file))
}

type SessionHooks = import('./services/ssh.js').SessionHooks
type RunFlags = import('./services/run/pipeline.js').RunFlags

/** `crabbox run --id X …`: src/commands/run.ts without --json. */
async function fastRun(
  context: import('./services/context.js').ServiceContext,
  fast: FastCommand,
  beforeCommand?: RunFlags['beforeCommand'],
): Promise<void> {
  const { flags } = fast
  const [{ runPipeline, reportTiming }, { RemoteExit }] = await Promise.all([import('./services/run/pipeline.js'), import('./errors.js')])
  const timing = await runPipeline(context, fast.words, {
    id: flags.id as string,
    keep: false,
    noSync: flags['no-sync'] === true,
    syncOnly: false,
    shell: flags.shell === true,
    checksum: false,
    forceSyncLarge: false,
    timingJson: flags['timing-json'] === true,
    json: false,
    debug: flags.debug ? (message) => process.stderr.write(`debug: ${message}\n`) : undefined,
    beforeCommand,
  })
  reportTiming(timing, flags['timing-json'] === true, flags.quiet === true)
  if (timing.exitCode !== 0) throw new RemoteExit(timing.exitCode)
}

/** BaseCommand.catch without oclif: a remote exit code passes through, anything else is printed. */
async function failed(error: Error, progress: import('./ui/progress.js').Progress, debug: boolean): Promise<number> {
  const [{ RemoteExit }, { asFailure, printFailure, printOrigin }] = await Promise.all([import('./errors.js'), import('./failure.js')])
  if (error instanceof RemoteExit) return error.exitCode
  progress.fail()
  const failure = asFailure(error, debug)
  printFailure(failure)
  if (debug) printOrigin(failure, error)
  return failure.exitCode
}

/**
 * Entry of the connection agent's spare worker (src/warm-worker.ts, started by
 * src/transport/ssh/agent-spare.ts): loads every module a hot command needs, then waits on
 * `socketPath` for one thin client's command of the same `build` and runs it with `runFast`.
 */
export async function warmWorker(socketPath: string, build: string): Promise<void> {
  const { serveWarm } = await import('./warm-worker.js')
  const modules = [
    ...SSH_MODULES,
    ...RUN_MODULES,
    ...SYNC_MODULES,
    () => import('./config/load.js'),
    () => import('./services/context.js'),
    () => import('./ui/progress.js'),
    () => import('./errors.js'),
    () => import('./failure.js'),
  ]
  const preload = () => Promise.all(modules.map((load) => load())).then(() => rehearse().catch(() => {}))
  serveWarm(runFast, preload, socketPath, build, (fast) => readConfig(fast, build), readAhead(socketPath))
}

/**
 * While a spare waits: the last synced checkout's stored manifest and sent record, parsed (a small
 * change then skips it). The oldest spare does it, which the thin client tries first.
 */
const readAhead = (socketPath: string) => ({
  start() {
    const roster = dirname(socketPath)
    const mine = spareNumber(basename(socketPath))
    const leader = () => {
      try {
        return !readdirSync(roster).some((name) => spareNumber(name) < mine)
      } catch {
        return false
      }
    }
    void Promise.all([
      import('./services/sync/warm-files.js'),
      import('./services/sync/stored-manifest.js'),
      import('./services/sync/sent-records.js'),
    ])
      .then(([warm, manifest, sent]) => warm.readAhead([manifest.storedManifestFile, sent.SentManifests.warmFile], { leader, roster }))
      .catch(() => {})
  },
  stop() {
    void import('./services/sync/warm-files.js').then((warm) => warm.stopReadingAhead())
  },
})

/**
 * Runs the parts of a hot command that have no side effects once, in the spare before any client
 * comes: V8 compiles a function the first time it runs, and those compiles would otherwise land
 * inside the command (`--no-lazy` compiles everything instead: ≈ 40 ms of CPU per spare).
 */
async function rehearse(): Promise<void> {
  fastCommand(['run', '--id', 'rehearsal', '--no-sync', '--', 'true'], {})
  const fast = fastCommand(['ssh', '--id', 'rehearsal', '--', 'true'], {})
  // The spare's own config (the agent's cwd and environment): read only, and nothing keeps it.
  if (fast) await readConfig(fast, 'rehearsal').loaded
  const [{ agentStatus }, { remoteCommandFor }] = await Promise.all([
    import('./transport/ssh/agent-client.js'),
    import('./services/run/remote-command.js'),
  ])
  remoteCommandFor(['true'], { pidFile: '/tmp/rehearsal.pid' })
  // A status request to the agent that started this spare: the socket, frame and reply code every command runs.
  await agentStatus()
}
