import { Args } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import type { TestResultSummary } from '../protocol/runs.js'
import { runResults } from '../services/history.js'
import { formatResults } from '../ui/history.js'

export default class Results extends BaseCommand<typeof Results> {
  static override summary = 'Show the JUnit test summary a run recorded'
  static override examples = ['<%= config.bin %> results run_0123456789ab', '<%= config.bin %> results run_0123456789ab --json']
  static override args = { run: Args.string({ description: 'Run ID (run_…)', required: true }) }

  async run(): Promise<{ runId: string; results: TestResultSummary | null }> {
    const { args } = await this.parse(Results)
    const results = await runResults(await this.context(), args.run)
    if (!this.jsonEnabled()) {
      if (results) this.log(formatResults(results))
      else process.stderr.write(`no test results recorded for ${args.run}\n`)
    }
    return { runId: args.run, results }
  }
}
