import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { leaseFlags } from '../../flags.js'
import type { EgressStatusResult } from '../../services/egress/index.js'

export default class EgressStatusCommand extends BaseCommand<typeof EgressStatusCommand> {
  static override summary = "Show this machine's egress process for a lease and the broker's view of its session"
  static override examples = ['<%= config.bin %> egress status --id blue-crab', '<%= config.bin %> egress status --id blue-crab --json']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug', required: true }),
    provider: leaseFlags.provider,
    coordinator: Flags.string({ summary: 'Broker URL for egress (default: broker.url)', helpValue: 'URL' }),
  }

  async run(): Promise<EgressStatusResult> {
    const { flags } = await this.parse(EgressStatusCommand)
    const { egressStatus } = await import('../../services/egress/index.js')
    const result = await egressStatus(await this.context({ provider: flags.provider }), flags)
    if (!this.jsonEnabled()) {
      const { local, broker } = result
      this.log(
        `local: ${local.running ? `running (pid ${local.pid}${local.daemon ? ', daemon' : ''})` : 'not running'}${local.listen ? ` proxy ${local.listen}` : ''}`,
      )
      if (local.problem) this.log(`problem: ${local.problem}`)
      if (local.logPath) this.log(`log: ${local.logPath}`)
      if (broker) {
        this.log(`session: ${broker.sessionID || '-'}${broker.profile ? ` profile ${broker.profile}` : ''}`)
        this.log(
          `host: ${broker.hostConnected ? 'connected' : 'not connected'}  client: ${broker.clientConnected ? 'connected' : 'not connected'}`,
        )
        if (broker.allow.length) this.log(`allow: ${broker.allow.join(', ')}`)
      } else this.log(`broker: ${result.brokerError}`)
    }
    return result
  }
}
