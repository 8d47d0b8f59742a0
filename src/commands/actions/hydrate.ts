import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { parseDuration } from '../../config/schema.js'
import { durationFlag, parsePositiveInt, reclaimFlag } from '../../flags.js'
import type { HydrateResult } from '../../services/actions/index.js'
import { stopwatch } from '../../services/run/timing.js'
import { formatMs } from '../../ui/format.js'

export default class ActionsHydrate extends BaseCommand<typeof ActionsHydrate> {
  static override summary = "Make a lease look like the repository's CI job: run the workflow's setup steps on it"
  static override description =
    'Registers an ephemeral runner on the lease, dispatches the hydration workflow (actions.workflow) with the inputs crabbox_id, ' +
    'crabbox_runner_label and crabbox_keep_alive_minutes (crabbox_job when actions.job is set), and waits until the job has written ' +
    "its marker on the lease (workspace, environment, services). `run --id` and `cache warm` then run in the job's workspace with its " +
    'environment; `stop` ends the job. On timeout the runner is stopped and deregistered.'
  static override examples = [
    '<%= config.bin %> actions hydrate --id blue-crab',
    '<%= config.bin %> actions hydrate --id blue-crab --wait-timeout 30m -f node=22',
  ]
  static override flags = {
    id: Flags.string({ description: 'Lease ID (cbx_…) or slug', helpValue: 'ID|SLUG', required: true }),
    repo: Flags.string({ description: 'GitHub repository owner/name (config actions.repo; default: the origin remote)' }),
    workflow: Flags.string({ description: 'Hydration workflow file name or ID (config actions.workflow; default crabbox.yml)' }),
    ref: Flags.string({ description: 'Branch or tag to run (config actions.ref; default: the default branch)' }),
    'wait-timeout': durationFlag({ description: 'How long to wait for the job to hydrate the lease', default: '20m' }),
    'keep-alive-minutes': Flags.custom<number>({ helpValue: 'N', parse: async (input) => parsePositiveInt(input) })({
      description: 'How long the job stays alive for the lease, in minutes',
      default: 90,
    }),
    field: Flags.string({
      char: 'f',
      description: 'Another workflow input key=value (repeatable)',
      multiple: true,
      helpValue: 'KEY=VALUE',
    }),
    reclaim: reclaimFlag,
  }

  async run(): Promise<HydrateResult> {
    const { flags } = await this.parse(ActionsHydrate)
    const { hydrateLease } = await import('../../services/actions/index.js')
    const total = stopwatch()
    const result = await hydrateLease(await this.context(flags), {
      ...flags,
      fields: flags.field,
      waitTimeoutMs: parseDuration(flags['wait-timeout']),
      keepAliveMinutes: flags['keep-alive-minutes'],
    })
    if (!this.jsonEnabled()) {
      this.log(
        `hydrated ${result.leaseId} workspace=${result.workspace}${result.runUrl ? ` run=${result.runUrl}` : ''} total=${formatMs(total())}`,
      )
      this.log(`run in it: crabbox run --id ${result.leaseId} -- <command>   end it: crabbox stop ${result.leaseId}`)
    }
    return result
  }
}
