import { Args } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { idFlag, leaseFlags } from '../flags.js'
import { requireId, stopLease, type StopResult } from '../services/lease-ops.js'

export default class Stop extends BaseCommand<typeof Stop> {
  static override summary = 'Release a lease (idempotent)'
  static override examples = ['<%= config.bin %> stop blue-prawn', '<%= config.bin %> stop --id cbx_0123456789ab']
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = { id: idFlag, provider: leaseFlags.provider }

  async run(): Promise<StopResult> {
    const { args, flags } = await this.parse(this.ctor as typeof Stop)
    const result = await stopLease(requireId(args.lease ?? flags.id), await this.context(flags))
    if (!this.jsonEnabled())
      this.log(result.released ? `released ${result.id}${result.slug ? ` (${result.slug})` : ''}` : `${result.id} is already released`)
    return result
  }
}
