import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { leaseFlags } from '../flags.js'
import { warmupLease, type LeaseView } from '../services/lease-ops.js'

export default class Warmup extends BaseCommand<typeof Warmup> {
  static override summary = 'Lease a box and wait until it is ready, for reuse with `run --id`'
  static override examples = ['<%= config.bin %> warmup', '<%= config.bin %> warmup --provider static --json']
  static override flags = {
    ...leaseFlags,
    keep: Flags.boolean({
      description: 'Keep the lease after warmup (--no-keep releases it on failure only)',
      default: true,
      allowNo: true,
    }),
  }

  async run(): Promise<LeaseView> {
    const { flags } = await this.parse(Warmup)
    const lease = await warmupLease(await this.context(flags), { keep: flags.keep })
    if (!this.jsonEnabled()) {
      this.log(`leased ${lease.id} slug=${lease.slug} provider=${lease.provider}${lease.expiresAt ? ` expires=${lease.expiresAt}` : ''}`)
      this.log(`ready ssh=${lease.user}@${lease.host}:${lease.port} workroot=${lease.workRoot}`)
      this.log(`reuse it: crabbox run --id ${lease.slug} -- <command>   stop it: crabbox stop ${lease.slug}`)
    }
    return lease
  }
}
