import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import type { WebVncStatusResult } from '../../services/webvnc/index.js'
import { renderWebVncStatus } from '../../ui/webvnc.js'

export default class WebVncStatus extends BaseCommand<typeof WebVncStatus> {
  static override summary = "Show a lease's WebVNC bridge: the local bridge or daemon, the broker's view, recent events"
  static override examples = ['<%= config.bin %> webvnc status --id blue-crab', '<%= config.bin %> webvnc status --id blue-crab --json']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug', required: true }),
  }

  async run(): Promise<WebVncStatusResult> {
    const { flags } = await this.parse(WebVncStatus)
    const { webvncStatus } = await import('../../services/webvnc/index.js')
    const status = await webvncStatus(await this.context(), flags.id)
    if (!this.jsonEnabled()) this.log(renderWebVncStatus(status))
    return status
  }
}
