import { Flags } from '@oclif/core'
import { BaseCommand } from '../../../base-command.js'
import { CrabboxError } from '../../../errors.js'
import type { DaemonListResult } from '../../../services/webvnc/index.js'
import { desktopRescue } from '../../../ui/rescue.js'
import { renderDaemons } from '../../../ui/webvnc.js'

export default class WebVncDaemonStatus extends BaseCommand<typeof WebVncDaemonStatus> {
  static override summary = 'Show the WebVNC daemons on this machine (exit 1 when one was killed)'
  static override examples = ['<%= config.bin %> webvnc daemon status', '<%= config.bin %> webvnc daemon status --id blue-crab --json']
  static override flags = {
    id: Flags.string({ summary: 'Only the daemon of this lease (ID or slug)' }),
  }

  async run(): Promise<DaemonListResult> {
    const { flags } = await this.parse(WebVncDaemonStatus)
    const { daemonStatus } = await import('../../../services/webvnc/index.js')
    const result = daemonStatus(flags.id)
    if (!this.jsonEnabled()) this.log(renderDaemons(result.daemons, desktopRescue))
    if (result.daemons.some((daemon) => daemon.problem)) {
      if (this.jsonEnabled()) this.logJson(result)
      this.exit(new CrabboxError('a WebVNC daemon is not running').exitCode)
    }
    return result
  }
}
