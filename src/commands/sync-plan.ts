import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { syncPlan, type SyncPlanSummary } from '../services/sync/summary.js'
import { renderSyncPlan } from '../ui/sync-plan.js'

export default class SyncPlan extends BaseCommand<typeof SyncPlan> {
  static override summary = 'Show what `crabbox run` would sync from this checkout, without leasing anything'
  static override description =
    'Builds the same manifest as `run` (tracked plus untracked non-ignored files, minus excludes and .crabboxignore) and prints its file count and size, tracked files deleted locally, and the largest files and folders.'
  static override examples = ['<%= config.bin %> sync-plan', '<%= config.bin %> sync-plan --limit 5 --json']
  static override flags = {
    limit: Flags.integer({ description: 'How many files and folders to list', default: 20, min: 1 }),
  }

  async run(): Promise<SyncPlanSummary> {
    const { flags } = await this.parse(SyncPlan)
    const context = await this.context()
    const plan = await syncPlan(context.cwd, context.config.sync, flags.limit)
    if (!this.jsonEnabled()) for (const line of renderSyncPlan(plan)) this.log(line)
    return plan
  }
}
