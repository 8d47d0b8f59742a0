import { Args } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { runLog, type RunLog } from '../services/history.js'

export default class Logs extends BaseCommand<typeof Logs> {
  static override summary = "Print a run's retained log (its last 8 MiB of output)"
  static override examples = ['<%= config.bin %> logs run_0123456789ab', '<%= config.bin %> logs run_0123456789ab --json']
  static override args = { run: Args.string({ description: 'Run ID (run_…)', required: true }) }

  async run(): Promise<RunLog | { log: string }> {
    const { args } = await this.parse(Logs)
    const result = await runLog(await this.context(), args.run, this.jsonEnabled())
    if (!this.jsonEnabled()) process.stdout.write(result.log)
    return result
  }
}
