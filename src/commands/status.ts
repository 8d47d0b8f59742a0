import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { parseDuration } from '../config/schema.js'
import { durationFlag, idFlag, leaseFlags, oneId } from '../flags.js'
import { leaseStatus, requireId, type StatusView } from '../services/lease-ops.js'
import { statusLine } from '../ui/status.js'

export default class Status extends BaseCommand<typeof Status> {
  static override summary = 'Show a lease and whether its runner answers over SSH'
  static override examples = ['<%= config.bin %> status blue-prawn', '<%= config.bin %> status --id cbx_0123456789ab --wait --json']
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = {
    id: idFlag,
    provider: leaseFlags.provider,
    network: leaseFlags.network,
    wait: Flags.boolean({ description: 'Wait until the runner is ready', default: false }),
    'wait-timeout': durationFlag({ description: 'How long --wait waits', default: '5m' }),
  }

  async run(): Promise<StatusView> {
    const { args, flags } = await this.parse(Status)
    const view = await leaseStatus(requireId(oneId(args.lease, flags.id, 'lease')), await this.context(flags), {
      wait: flags.wait,
      timeoutMs: parseDuration(flags['wait-timeout']),
    })
    if (!this.jsonEnabled()) {
      this.log(statusLine(view))
      this.log(`ssh=${view.sshUser}@${view.sshHost}:${view.sshPort} workroot=${view.workroot ?? '-'}`)
    }
    return view
  }
}
