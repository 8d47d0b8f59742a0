import { Args } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { idFlag, leaseFlags, oneId } from '../flags.js'
import { inspectLease, requireId, type StatusView } from '../services/lease-ops.js'
import { inspectLines } from '../ui/status.js'

export default class Inspect extends BaseCommand<typeof Inspect> {
  static override summary = 'Show everything known about a lease, one key=value line each'
  static override description =
    'The same view as `status` (with --json the same JSON object): labels as `label.<name>=` lines, the latest telemetry as `telemetry.<metric>=` lines.'
  static override examples = ['<%= config.bin %> inspect blue-prawn', '<%= config.bin %> inspect --id cbx_0123456789ab --json']
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = { id: idFlag, provider: leaseFlags.provider, network: leaseFlags.network }

  async run(): Promise<StatusView> {
    const { args, flags } = await this.parse(Inspect)
    const view = await inspectLease(requireId(oneId(args.lease, flags.id, 'lease')), await this.context(flags))
    if (!this.jsonEnabled()) for (const line of inspectLines(view)) this.log(line)
    return view
  }
}
