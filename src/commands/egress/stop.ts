import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { leaseFlags } from '../../flags.js'

export default class EgressStop extends BaseCommand<typeof EgressStop> {
  static override summary = "Stop this machine's egress process for a lease (the lease's proxy stops with it)"
  static override examples = ['<%= config.bin %> egress stop --id blue-crab']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug', required: true }),
    provider: leaseFlags.provider,
    coordinator: Flags.string({ summary: 'Broker URL for egress (default: broker.url)', helpValue: 'URL' }),
  }

  async run(): Promise<{ leaseId: string; stopped: boolean }> {
    const { flags } = await this.parse(EgressStop)
    const { stopEgress } = await import('../../services/egress/index.js')
    const result = await stopEgress(await this.context({ provider: flags.provider }), flags)
    if (!this.jsonEnabled())
      this.log(result.stopped ? `stopped: egress for ${result.leaseId}` : `not running: egress for ${result.leaseId}`)
    return result
  }
}
