import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { desktopTargetFlags } from '../../flags.js'
import { usageError } from '../../errors.js'
import type { LaunchResult } from '../../services/desktop/launch.js'
import type { DaemonStartResult } from '../../services/webvnc/index.js'

export default class DesktopLaunch extends BaseCommand<typeof DesktopLaunch> {
  static override summary = "Start an app or the browser, detached, on a lease's desktop"
  static override description =
    "Waits for the runner's loopback VNC, then starts the command after `--` (or the browser with --browser) on DISPLAY=:99 with " +
    'setsid and nohup, so it outlives the SSH session; its output goes to a log under /tmp on the runner. ' +
    'When a layer is missing or the app exits at once, prints `problem:` and `rescue:` lines.'
  static override examples = [
    '<%= config.bin %> desktop launch --id blue-crab --browser --url https://example.com',
    '<%= config.bin %> desktop launch --id blue-crab -- xterm',
    '<%= config.bin %> desktop launch --id blue-crab --browser --url https://example.com --webvnc --open',
  ]
  static override usage = ['<%= command.id %> [FLAGS] [-- <command…>]']
  static override strict = false
  static override flags = {
    ...desktopTargetFlags,
    browser: Flags.boolean({ description: "Launch the runner's Chromium (windowed 1500x900 unless --fullscreen)", default: false }),
    url: Flags.string({ description: 'URL for the browser to open (needs --browser)' }),
    fullscreen: Flags.boolean({ description: 'Start the browser fullscreen', default: false }),
    webvnc: Flags.boolean({
      description: "Then start the WebVNC bridge daemon for the lease (as `webvnc daemon start`) and print the portal's WebVNC URL",
      default: false,
    }),
    open: Flags.boolean({
      description: "Then open the portal's WebVNC page in a browser here (starts the bridge daemon like --webvnc)",
      default: false,
    }),
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

  async run(): Promise<LaunchResult & { webvnc?: DaemonStartResult }> {
    const { flags } = await this.parse(DesktopLaunch)
    const dashDash = this.argv.indexOf('--')
    const argv = dashDash >= 0 ? this.argv.slice(dashDash + 1) : []
    const webvnc = flags.webvnc || flags.open
    // WebVNC relays through the broker: a lease by ID, checked before anything starts.
    if (webvnc && !flags.id)
      throw usageError('--webvnc and --open need a brokered lease: give --id', 'crabbox desktop launch --id <lease> --webvnc')
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
    if (!webvnc) return result
    const { startDaemon } = await import('../../services/webvnc/index.js')
    const daemon = await startDaemon(context, { id: flags.id! })
    if (!this.jsonEnabled()) {
      this.log(`webvnc: ${daemon.alreadyRunning ? 'daemon already running' : 'daemon started'} (pid ${daemon.pid}, log ${daemon.logPath})`)
      if (daemon.portalUrl) this.log(`portal: ${daemon.portalUrl}`)
    }
    if (flags.open && daemon.portalUrl) {
      const { openUrl } = await import('../../services/open-url.js')
      if (!openUrl(daemon.portalUrl)) this.warn('could not open a browser here; open the portal URL above')
    }
    return { ...result, webvnc: daemon }
  }
}
