import { Flags } from '@oclif/core'
import { BaseCommand } from '../../../base-command.js'
import type { DaemonStartResult } from '../../../services/webvnc/index.js'

export default class WebVncDaemonStart extends BaseCommand<typeof WebVncDaemonStart> {
  static override summary = 'Start the WebVNC bridge as a background process that outlives this shell'
  static override description =
    'Starts `crabbox webvnc --id …` detached, with its pid and log under the state folder (`<state>/webvnc/<lease ID>.{pid,log}`), ' +
    'and waits until it holds an agent socket; if it cannot, prints its `problem:`/`rescue:` lines.'
  static override examples = ['<%= config.bin %> webvnc daemon start --id blue-crab --open']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug (a desktop lease)', required: true }),
    'local-port': Flags.integer({ summary: "Also serve the runner's VNC on this local port (127.0.0.1)", min: 0, max: 65535 }),
    open: Flags.boolean({ summary: 'Open the portal WebVNC page once the bridge is up' }),
  }

  async run(): Promise<DaemonStartResult> {
    const { flags } = await this.parse(WebVncDaemonStart)
    const { startDaemon } = await import('../../../services/webvnc/index.js')
    const result = await startDaemon(await this.context(), { id: flags.id, localPort: flags['local-port'], open: flags.open })
    if (!this.jsonEnabled()) {
      this.log(`${result.alreadyRunning ? 'already running' : 'started'}: WebVNC daemon for ${result.leaseId} (pid ${result.pid})`)
      if (result.portalUrl) this.log(`portal: ${result.portalUrl}`)
      this.log(`log: ${result.logPath}`)
    }
    return result
  }
}
