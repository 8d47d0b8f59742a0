import { Args } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { idFlag, leaseFlags } from '../flags.js'
import { inspectLease, requireId } from '../services/lease-ops.js'

export default class Inspect extends BaseCommand<typeof Inspect> {
  static override summary = "Show everything known about a lease, including the provider's record"
  static override examples = ['<%= config.bin %> inspect blue-prawn --json']
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = { id: idFlag, provider: leaseFlags.provider }

  async run(): Promise<Awaited<ReturnType<typeof inspectLease>>> {
    const { args, flags } = await this.parse(Inspect)
    const view = await inspectLease(requireId(args.lease ?? flags.id), await this.context(flags))
    if (!this.jsonEnabled()) this.log(JSON.stringify(view, null, 2))
    return view
  }
}
