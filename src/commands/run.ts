import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { parseDuration } from '../config/schema.js'
import { type CrabboxError, RemoteExit } from '../errors.js'
import { durationFlag, idFlag, leaseFlags, reclaimFlag } from '../flags.js'
import { reportTiming, runPipeline } from '../services/run/pipeline.js'
import type { RunTiming } from '../services/run/timing.js'

/**
 * The `--json` result: exactly one object on stdout, on every outcome. `failure` says
 * whose the non-zero `exitCode` is: the remote command's, or crabbox's own (with `error`).
 */
export type RunResult = Partial<RunTiming> & {
  exitCode: number
  failure: 'remote' | 'crabbox' | null
  error?: { code: string; message: string; hint?: string }
}

function runResult(timing: RunTiming): RunResult {
  if (timing.exitCode === 0) return { ...timing, failure: null }
  if (!timing.interrupted) return { ...timing, failure: 'remote' }
  const message = timing.interrupted === 'signal' ? 'interrupted' : 'output closed early'
  return { ...timing, failure: 'crabbox', error: { code: 'interrupted', message } }
}

export default class Run extends BaseCommand<typeof Run> {
  static override summary = 'Lease a box, sync this checkout, run a command there, release'
  static override description =
    'Remote stdout and stderr stream to yours; the exit code is the remote one. Without a broker or provider configured, the embedded `local` provider runs the command on this machine in a throwaway workspace.'
  static override examples = [
    '<%= config.bin %> run -- npm test',
    '<%= config.bin %> run --id blue-prawn --no-sync -- uname -a',
    "<%= config.bin %> run --shell -- 'make build && make test'",
  ]
  static override usage = ['<%= command.id %> [FLAGS] -- <command…>']
  static override strict = false // argv after `--` is the remote command
  static override flags = {
    ...leaseFlags,
    id: idFlag,
    reclaim: reclaimFlag,
    keep: Flags.boolean({ description: 'Keep the lease after the command (reuse it with --id)', default: false }),
    'no-sync': Flags.boolean({ description: 'Do not sync the checkout; run in the existing workdir', default: false }),
    'sync-only': Flags.boolean({ description: 'Sync, then stop without running a command', default: false }),
    shell: Flags.boolean({ description: 'Run the command words as one bash script', default: false }),
    checksum: Flags.boolean({ description: 'Compare file contents, not size and mtime, when syncing' }),
    'force-sync-large': Flags.boolean({ description: 'Sync even past the large-checkout limits', default: false }),
    'timing-json': Flags.boolean({ description: 'Print one JSON timing line on stderr instead of the summary', default: false }),
    junit: Flags.string({
      description: 'Remote JUnit XML files to summarise after the command: comma-separated paths or globs relative to the workdir',
      helpValue: 'PATHS',
    }),
    'bootstrap-timeout': durationFlag({ description: 'How long a new runner gets to answer SSH (default 20m; 60s for local)' }),
  }

  async run(): Promise<RunResult> {
    const { flags, argv } = await this.parse(Run)
    // Words after `--` are taken from the raw argv: the parser may reorder them.
    const dashDash = this.argv.indexOf('--')
    const command = dashDash >= 0 ? this.argv.slice(dashDash + 1) : (argv as string[])
    const timing = await runPipeline(await this.context(flags), command, {
      id: flags.id,
      keep: flags.keep,
      noSync: flags['no-sync'],
      syncOnly: flags['sync-only'],
      shell: flags.shell,
      checksum: flags.checksum ?? false,
      forceSyncLarge: flags['force-sync-large'],
      timingJson: flags['timing-json'],
      reclaim: flags.reclaim,
      json: this.jsonEnabled(),
      bootstrapTimeoutMs: flags['bootstrap-timeout'] ? parseDuration(flags['bootstrap-timeout']) : undefined,
      debug: flags.debug ? (message) => process.stderr.write(`debug: ${message}\n`) : undefined,
    })
    reportTiming(timing, flags['timing-json'], flags.quiet)
    const result = runResult(timing)
    if (timing.exitCode !== 0) {
      if (this.jsonEnabled()) this.logJson(result)
      throw new RemoteExit(timing.exitCode)
    }
    return result
  }

  /** Under --json a crabbox failure is a run result too: one object on stdout, whatever happened. */
  protected override failureJson(failure: CrabboxError): RunResult {
    return { exitCode: failure.exitCode, failure: 'crabbox', error: { code: failure.code, message: failure.message, hint: failure.hint } }
  }
}
