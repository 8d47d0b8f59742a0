import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { desktopTargetFlags } from '../../flags.js'
import type { LaunchResult } from '../../services/desktop/launch.js'

export default class DesktopLaunch extends BaseCommand<typeof DesktopLaunch> {
  static override summary = "Start an app or the browser, detached, on a lease's desktop"
  static override description =
    "Waits for the runner's loopback VNC, then starts the command after `--` (or the browser with --browser) on DISPLAY=:99 with " +
    'setsid and nohup, so it outlives the SSH session; its output goes to a log under /tmp on the runner. ' +
    'When a layer is missing or the app exits at once, prints `problem:` and `rescue:` lines.'
  static override examples = [
    '<%= config.bin %> desktop launch --id blue-crab --browser --url https://example.com',
    '<%= config.bin %> desktop launch --id blue-crab -- xterm',
  ]
  static override usage = ['<%= command.id %> [FLAGS] [-- <command…>]']
  static override strict = false
  static override flags = {
    ...desktopTargetFlags,
    browser: Flags.boolean({ description: "Launch the runner's Chromium (windowed 1500x900 unless --fullscreen)", default: false }),
    url: Flags.string({ description: 'URL for the browser to open (needs --browser)' }),
    fullscreen: Flags.boolean({ description: 'Start the browser fullscreen', default: false }),
    egress: Flags.string({
      description:
        "Send the browser's traffic through the operator's machine: starts `egress start --daemon` with this profile unless egress already runs here for the lease (needs --browser)",
      helpValue: 'PROFILE',
    }),
    'egress-proxy': Flags.string({
      description: 'The egress proxy on the lease the browser uses',
      default: '127.0.0.1:3128',
      helpValue: 'HOST:PORT',
    }),
  }

  async run(): Promise<LaunchResult> {
    const { flags } = await this.parse(DesktopLaunch)
    const dashDash = this.argv.indexOf('--')
    const argv = dashDash >= 0 ? this.argv.slice(dashDash + 1) : []
    const { desktopLaunch, launchCommand } = await import('../../services/desktop/launch.js')
    const launch = { ...flags, egressProxy: flags['egress-proxy'] }
    launchCommand(launch, argv)
    const context = await this.context(flags)
    if (flags.egress !== undefined) {
      const { ensureEgress } = await import('../../services/egress/index.js')
      const egress = await ensureEgress(context, {
        id: flags.id ?? '',
        profile: flags.egress,
        listen: launch.egressProxy,
        provider: flags.provider,
      })
      if (!this.jsonEnabled())
        this.log(`egress: ${egress.alreadyRunning ? 'already running' : 'started'} (pid ${egress.pid}), proxy http://${egress.listen}`)
    }
    const result = await desktopLaunch(context, launch, argv)
    if (!this.jsonEnabled()) this.log(`launched pid=${result.pid} log=${result.log}`)
    return result
  }
}
