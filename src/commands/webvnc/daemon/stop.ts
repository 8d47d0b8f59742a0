import { Flags } from '@oclif/core'
import { BaseCommand } from '../../../base-command.js'

export default class WebVncDaemonStop extends BaseCommand<typeof WebVncDaemonStop> {
  static override summary = 'Stop the WebVNC daemon of a lease (all of them without --id)'
  static override examples = ['<%= config.bin %> webvnc daemon stop --id blue-crab', '<%= config.bin %> webvnc daemon stop']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug' }),
  }

  async run(): Promise<{ stopped: string[] }> {
    const { flags } = await this.parse(WebVncDaemonStop)
    const { daemonStop } = await import('../../../services/webvnc/index.js')
    const result = await daemonStop(flags.id)
    if (!this.jsonEnabled()) this.log(result.stopped.length ? `stopped: ${result.stopped.join(', ')}` : 'no WebVNC daemon was running')
    return result
  }
}
