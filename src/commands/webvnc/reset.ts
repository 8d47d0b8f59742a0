import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import type { WebVncResetResult } from '../../services/webvnc/index.js'
import { renderWebVncReset } from '../../ui/webvnc.js'

export default class WebVncReset extends BaseCommand<typeof WebVncReset> {
  static override summary = "Reset a lease's WebVNC: the broker closes every viewer and bridge socket; a local daemon is restarted"
  static override examples = ['<%= config.bin %> webvnc reset --id blue-crab']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug', required: true }),
  }

  async run(): Promise<WebVncResetResult> {
    const { flags } = await this.parse(WebVncReset)
    const { webvncReset } = await import('../../services/webvnc/index.js')
    const result = await webvncReset(await this.context(), flags.id)
    if (!this.jsonEnabled()) this.log(renderWebVncReset(result))
    return result
  }
}
