import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { RUN_LIMITS, RUN_STATES, type RunRecord } from '../protocol/runs.js'
import { runHistory } from '../services/history.js'
import { formatRun, renderRunTable } from '../ui/history.js'

export default class History extends BaseCommand<typeof History> {
  static override summary = 'List recent runs recorded by the broker, newest first'
  static override description =
    'On a terminal: a table with a header and start times relative to now. Piped: one run per line, fields in a fixed order with ISO times, for scripts (or use --json).'
  static override examples = ['<%= config.bin %> history', '<%= config.bin %> history --lease blue-crab --state failed --limit 10 --json']
  static override flags = {
    lease: Flags.string({ description: 'Only runs on this lease (ID, or slug of an active lease)' }),
    owner: Flags.string({ description: 'Only runs of this owner (admin only; others always see their own)' }),
    org: Flags.string({ description: 'Only runs of this org (admin only)' }),
    state: Flags.string({ description: 'Only runs in this state', options: [...RUN_STATES] }),
    limit: Flags.integer({ description: `At most this many runs (max ${RUN_LIMITS.listMax})`, default: RUN_LIMITS.listDefault, min: 1 }),
  }

  async run(): Promise<{ runs: RunRecord[] }> {
    const { flags } = await this.parse(History)
    const runs = await runHistory(await this.context(), flags)
    if (!this.jsonEnabled()) {
      if (runs.length === 0) process.stderr.write('no runs recorded\n')
      else if (process.stdout.isTTY) this.log(renderRunTable(runs))
      else for (const run of runs) this.log(formatRun(run))
    }
    return { runs }
  }
}
