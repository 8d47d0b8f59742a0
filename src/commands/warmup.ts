import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { usageError } from '../errors.js'
import { leaseFlags, reclaimFlag } from '../flags.js'
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
      description: 'Register a GitHub Actions runner on the lease (not available yet: exit 2)',
      default: false,
    }),
  }

  async run(): Promise<LeaseView> {
    const { flags } = await this.parse(Warmup)
    if (flags['actions-runner'])
      throw usageError(
        'warmup --actions-runner is not available yet: crabbox cannot register GitHub Actions runners',
        'leave out --actions-runner; `crabbox warmup` then `crabbox run --id <lease> -- <command>` runs the same commands',
      )
    const total = stopwatch()
    const context = await this.context(flags)
    const lease = await warmupLease(context, { keep: flags.keep, repoRoot: context.repoRoot ?? context.cwd, reclaim: flags.reclaim })
    const totalMs = total()
    if (flags['timing-json']) process.stderr.write(`${JSON.stringify(warmupTiming(lease, totalMs))}\n`)
    if (!this.jsonEnabled()) {
      this.log(`leased ${lease.id} slug=${lease.slug} provider=${lease.provider}${lease.expiresAt ? ` expires=${lease.expiresAt}` : ''}`)
      this.log(
        `ready ssh=${lease.user}@${lease.host}:${lease.port}${lease.network ? ` network=${lease.network}` : ''} workroot=${lease.workRoot}`,
      )
      this.log(`warmup complete total=${formatMs(totalMs)}`)
      this.log(`reuse it: crabbox run --id ${lease.slug} -- <command>   stop it: crabbox stop ${lease.slug}`)
    }
    return lease
  }
}
