import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

/**
 * The fast path: the hot commands a coding agent calls hundreds of times an hour,
 * `crabbox ssh --id X -- <cmd>` and `crabbox run --id X [--no-sync] -- <cmd>`, start here
 * instead of in oclif (bin/run.js asks `fastCommand`). The argv is read by a small table
 * below; anything it does not know (`--help`, `--json`, any other flag, a flag given
 * twice, a missing command, a user plugin, `CRABBOX_NO_FAST_PATH=1`) answers undefined and
 * the full CLI runs instead, so flags added to these commands later keep working there.
 * `runFast` then does what the oclif commands do (src/commands/ssh.ts and run.ts): load
 * config, call the same service, fail through the same printer (src/failure.ts).
 * Everything heavy is imported lazily, so this file pulls in neither oclif nor the services.
 */

type FlagKind = 'string' | 'boolean'

/** Flags each hot command takes on this path; a config flag is passed to the config loader by this name, as oclif would. */
const COMMAND_FLAGS: Record<FastCommand['command'], Record<string, FlagKind>> = {
  ssh: { id: 'string', provider: 'string', 'static-host': 'string', 'static-user': 'string', 'static-port': 'string' },
  run: { id: 'string', 'no-sync': 'boolean', shell: 'boolean', 'timing-json': 'boolean' },
}
const GLOBAL_FLAGS: Record<string, FlagKind> = { debug: 'boolean', quiet: 'boolean' }
const SHORT: Record<string, string> = { '-q': 'quiet' }
/** Flags that are config (config/load.ts flagPaths), handed to the config loader. */
const CONFIG_FLAGS = new Set(['provider', 'static-host', 'static-user', 'static-port'])

export interface FastCommand {
  command: 'ssh' | 'run'
  flags: Record<string, string | boolean>
  /** ssh: the lease named by the one word before `--` (no --id, --provider or --static-host). */
  lease?: string
  /** The remote command: the words after `--`, never empty. */
  words: string[]
}

const truthy = (value: string | undefined) => ['1', 'true', 'yes'].includes((value ?? '').toLowerCase())

/** Whether oclif would load a user plugin (`crabbox plugins install`), which could change any command. */
function userPlugins(env: NodeJS.ProcessEnv): boolean {
  const dataDir = env.CRABBOX_DATA_DIR || join(env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share'), 'crabbox')
  return existsSync(join(dataDir, 'package.json'))
}

/** The hot command `argv` (`process.argv.slice(2)`) asks for, or undefined: run the full CLI. */
export function fastCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): FastCommand | undefined {
  const command = argv[0]
  if (command !== 'ssh' && command !== 'run') return undefined
  if (truthy(env.CRABBOX_NO_FAST_PATH) || env.CRABBOX_CONTENT_TYPE?.toLowerCase() === 'json') return undefined
  const dashDash = argv.indexOf('--')
  const words = dashDash >= 0 ? argv.slice(dashDash + 1) : []
  if (words.length === 0) return undefined
  const known = { ...COMMAND_FLAGS[command], ...GLOBAL_FLAGS }
  const flags: Record<string, string | boolean> = {}
  const positional: string[] = []
  const before = argv.slice(1, dashDash)
  for (let i = 0; i < before.length; i++) {
    const word = before[i]
    if (!word.startsWith('-')) {
      positional.push(word)
      continue
    }
    const eq = word.indexOf('=')
    const name = SHORT[word] ?? (word.startsWith('--') ? word.slice(2, eq >= 0 ? eq : undefined) : '')
    const kind = known[name]
    if (!kind || name in flags) return undefined
    if (kind === 'boolean') {
      if (eq >= 0) return undefined
      flags[name] = true
      continue
    }
    const value = eq >= 0 ? word.slice(eq + 1) : before[++i]
    if (value === undefined || value === '' || value.startsWith('-')) return undefined
    flags[name] = value
  }
  if (userPlugins(env)) return undefined
  if (command === 'run') return flags.id && positional.length === 0 ? { command, flags, words } : undefined
  // ssh: a lease word only stands alone; with --id (or a static host) oclif makes it part of the command.
  if (positional.length > 1 || (positional.length === 1 && (flags.id || flags.provider || flags['static-host']))) return undefined
  return { command, flags, lease: positional[0], words }
}

const SSH_MODULES = [() => import('./services/ssh.js'), () => import('./services/lease.js'), () => import('./transport/ssh/index.js')]
const RUN_MODULES = [() => import('./services/run/pipeline.js'), () => import('./transport/ssh/index.js')]
/** Sync's unchanged check and guard: only a run that syncs loads them. */
const SYNC_MODULES = [() => import('./services/sync/snapshot.js'), () => import('./services/sync/guard.js')]

/**
 * Runs a command `fastCommand` accepted the way BaseCommand and the command class would:
 * config with the command's config flags on top, the same service, the same failure
 * output and exit code. Resolves on success (the process then ends as oclif's does);
 * on failure it exits with the command's exit code.
 */
export async function runFast(fast: FastCommand): Promise<void> {
  delete process.env.CRABBOX_REDIRECTED // oclif drops it before every command
  const mark = startMarks()
  mark('node and bin/run.js')
  const { flags } = fast
  const debug = flags.debug === true
  // Every module the command will need starts loading now, side by side, instead of each
  // import waiting for the code that asks for it (one file read after another).
  const later = fast.command === 'ssh' ? SSH_MODULES : flags['no-sync'] ? RUN_MODULES : [...RUN_MODULES, ...SYNC_MODULES]
  for (const load of later) load().catch(() => {})
  const [{ loadConfig }, { serviceContext }, { createProgress }] = await Promise.all([
    import('./config/load.js'),
    import('./services/context.js'),
    import('./ui/progress.js'),
  ])
  mark('modules')
  const progress = createProgress({ plain: false, quiet: flags.quiet === true })
  let exitCode: number | undefined
  try {
    const configFlags = Object.fromEntries(Object.entries(flags).filter(([name]) => CONFIG_FLAGS.has(name)))
    const cwd = process.cwd()
    const { config, files, repoRoot } = await loadConfig({ cwd, flags: configFlags, warn: (m) => progress.warn(m) })
    const context = serviceContext({ config, progress, json: false, cwd, repoRoot, configFiles: files })
    mark('config')
    if (fast.command === 'ssh') {
      const { sshCommand } = await import('./services/ssh.js')
      await sshCommand(context, { id: (flags.id as string | undefined) ?? fast.lease }, fast.words)
    } else {
      await fastRun(context, fast)
    }
  } catch (error) {
    exitCode = await failed(error as Error, progress, debug)
  } finally {
    progress.done()
  }
  mark('command')
  if (exitCode !== undefined) process.exit(exitCode)
}

/**
 * `CRABBOX_TRACE_START=1`: one stderr line per start-up phase, `start-up: <phase> <ms> (at <ms>)`,
 * in ms since the process started (docs/performance.md's profile of a warm run).
 */
function startMarks(): (phase: string) => void {
  if (!truthy(process.env.CRABBOX_TRACE_START)) return () => {}
  let last = 0
  return (phase) => {
    const now = performance.now()
    process.stderr.write(`start-up: ${phase} ${(now - last).toFixed(1)} ms (at ${now.toFixed(1)} ms)\n`)
    last = now
  }
}

/** `crabbox run --id X …`: src/commands/run.ts without --json. */
async function fastRun(context: import('./services/context.js').ServiceContext, fast: FastCommand): Promise<void> {
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
