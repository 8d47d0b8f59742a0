import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { RUN_LIMITS, type RunEventRecord } from '../protocol/runs.js'
import { runIdFlag, runIdOf } from '../flags.js'
import { runEvents } from '../services/history.js'
import { formatEvent } from '../ui/history.js'

export default class Events extends BaseCommand<typeof Events> {
  static override summary = "List a run's recorded events (one page)"
  static override examples = [
    '<%= config.bin %> events run_0123456789ab',
    '<%= config.bin %> events run_0123456789ab --after 100 --limit 50 --json',
  ]
  static override args = { run: Args.string({ description: 'Run ID (run_…), or use --id' }) }
  static override flags = {
    id: runIdFlag,
    after: Flags.integer({ description: 'Only events after this sequence number', default: 0, min: 0 }),
    limit: Flags.integer({
      description: `At most this many events (max ${RUN_LIMITS.eventsPageMax})`,
      default: RUN_LIMITS.eventsPageDefault,
      min: 1,
    }),
  }

  async run(): Promise<{ events: RunEventRecord[] }> {
    const { args, flags } = await this.parse(Events)
    const events = await runEvents(await this.context(), runIdOf(args.run, flags.id), { after: flags.after, limit: flags.limit })
    if (!this.jsonEnabled()) for (const event of events) this.log(formatEvent(event))
    return { events }
  }
}
