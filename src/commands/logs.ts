import { Args } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { runIdFlag, runIdOf } from '../flags.js'
import { runLog, type RunLog } from '../services/history.js'

export default class Logs extends BaseCommand<typeof Logs> {
  static override summary = "Print a run's retained log (its last 8 MiB of output)"
  static override examples = ['<%= config.bin %> logs run_0123456789ab', '<%= config.bin %> logs --id run_0123456789ab --json']
  static override flags = { id: runIdFlag }
  static override args = { run: Args.string({ description: 'Run ID (run_…), or use --id' }) }

  async run(): Promise<RunLog | { log: string }> {
    const { args, flags } = await this.parse(Logs)
    const result = await runLog(await this.context(), runIdOf(args.run, flags.id), this.jsonEnabled())
    if (!this.jsonEnabled()) process.stdout.write(result.log)
    return result
  }
}
