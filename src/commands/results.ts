import { Args } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import type { TestResultSummary } from '../protocol/runs.js'
import { runIdFlag, runIdOf } from '../flags.js'
import { runResults } from '../services/history.js'
import { formatResults } from '../ui/history.js'

export default class Results extends BaseCommand<typeof Results> {
  static override summary = 'Show the JUnit test summary a run recorded'
  static override examples = ['<%= config.bin %> results run_0123456789ab', '<%= config.bin %> results --id run_0123456789ab --json']
  static override flags = { id: runIdFlag }
  static override args = { run: Args.string({ description: 'Run ID (run_…), or use --id' }) }

  /** With --json: the run's results object itself, or `null` when it recorded none. */
  async run(): Promise<TestResultSummary | null> {
    const { args, flags } = await this.parse(Results)
    const runId = runIdOf(args.run, flags.id)
    const results = await runResults(await this.context(), runId)
    if (!this.jsonEnabled()) {
      if (results) this.log(formatResults(results))
      else process.stderr.write(`no test results recorded for ${runId}\n`)
    } else if (!results) this.logJson(null) // oclif prints only a non-empty result
    return results
  }
}
