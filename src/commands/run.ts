import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { parseDuration } from '../config/schema.js'
import { RemoteExit } from '../errors.js'
import { durationFlag, idFlag, leaseFlags } from '../flags.js'
import { reportTiming, runPipeline } from '../services/run/pipeline.js'
import type { RunTiming } from '../services/run/timing.js'

export default class Run extends BaseCommand<typeof Run> {
  static override summary = 'Lease a box, sync this checkout, run a command there, release'
  static override description =
    'Remote stdout and stderr stream to yours; the exit code is the remote one. Without a broker or provider configured, the embedded `local` provider runs the command on this machine in a throwaway workspace.'
  static override examples = [
    '<%= config.bin %> run -- npm test',
    '<%= config.bin %> run --id blue-prawn --no-sync -- uname -a',
    "<%= config.bin %> run --shell -- 'make build && make test'",
  ]
  static override strict = false // argv after `--` is the remote command
  static override flags = {
    ...leaseFlags,
    id: idFlag,
    keep: Flags.boolean({ description: 'Keep the lease after the command (reuse it with --id)', default: false }),
    'no-sync': Flags.boolean({ description: 'Do not sync the checkout; run in the existing workdir', default: false }),
    'sync-only': Flags.boolean({ description: 'Sync, then stop without running a command', default: false }),
    shell: Flags.boolean({ description: 'Run the command words as one bash script', default: false }),
    checksum: Flags.boolean({ description: 'Compare file contents, not size and mtime, when syncing' }),
    'force-sync-large': Flags.boolean({ description: 'Sync even past the large-checkout limits', default: false }),
    'timing-json': Flags.boolean({ description: 'Print one JSON timing line on stderr instead of the summary', default: false }),
    'bootstrap-timeout': durationFlag({ description: 'How long a new runner gets to answer SSH (default 20m; 60s for local)' }),
  }

  async run(): Promise<RunTiming> {
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
      bootstrapTimeoutMs: flags['bootstrap-timeout'] ? parseDuration(flags['bootstrap-timeout']) : undefined,
    })
    reportTiming(timing, flags['timing-json'], flags.quiet)
    if (timing.exitCode !== 0) throw new RemoteExit(timing.exitCode)
    return timing
  }
}
