import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { parseDuration } from '../config/schema.js'
import { leaseFlags, reclaimFlag } from '../flags.js'
import type { HydrateResult } from '../services/actions/index.js'
import { warmupLease, type LeaseView } from '../services/lease-ops.js'
import { stopwatch, warmupTiming } from '../services/run/timing.js'
import { formatMs } from '../ui/format.js'

export default class Warmup extends BaseCommand<typeof Warmup> {
  static override summary = 'Lease a box and wait until it is ready, for reuse with `run --id`'
  static override examples = [
    '<%= config.bin %> warmup',
    '<%= config.bin %> warmup --provider static --json',
    '<%= config.bin %> warmup --timing-json 2> timing.json',
  ]
  static override flags = {
    ...leaseFlags,
    keep: Flags.boolean({
      description: 'Keep the lease after warmup (--no-keep releases it on failure only)',
      default: true,
      allowNo: true,
    }),
    reclaim: reclaimFlag,
    'timing-json': Flags.boolean({
      description: 'Print one JSON timing line on stderr (the shape run --timing-json prints)',
      default: false,
    }),
    'actions-runner': Flags.boolean({
      description:
        'Then hydrate it as `actions hydrate` does: an ephemeral GitHub Actions runner, the actions.workflow job run on it, its workspace and env kept',
      default: false,
    }),
  }

  async run(): Promise<LeaseView & { actions?: HydrateResult }> {
    const { flags } = await this.parse(Warmup)
    const total = stopwatch()
    const context = await this.context(flags)
    const actionsService = flags['actions-runner'] ? await import('../services/actions/index.js') : undefined
    await actionsService?.checkActionsSetup(context)
    const lease = await warmupLease(context, { keep: flags.keep, repoRoot: context.repoRoot ?? context.cwd, reclaim: flags.reclaim })
    let actions: HydrateResult | undefined
    if (actionsService)
      actions = await actionsService.hydrateLease(context, { id: lease.id, waitTimeoutMs: parseDuration('20m'), keepAliveMinutes: 90 })
    const totalMs = total()
    if (flags['timing-json']) process.stderr.write(`${JSON.stringify(warmupTiming(lease, totalMs))}\n`)
    if (!this.jsonEnabled()) {
      this.log(`leased ${lease.id} slug=${lease.slug} provider=${lease.provider}${lease.expiresAt ? ` expires=${lease.expiresAt}` : ''}`)
      this.log(
        `ready ssh=${lease.user}@${lease.host}:${lease.port}${lease.network ? ` network=${lease.network}` : ''} workroot=${lease.workRoot}`,
      )
      if (actions)
        this.log(`actions runner=${actions.runnerName} workspace=${actions.workspace}${actions.runUrl ? ` run=${actions.runUrl}` : ''}`)
      this.log(`warmup complete total=${formatMs(totalMs)}`)
      this.log(`reuse it: crabbox run --id ${lease.slug} -- <command>   stop it: crabbox stop ${lease.slug}`)
    }
    return actions ? { ...lease, actions } : lease
  }
}
