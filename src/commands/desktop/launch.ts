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
  }

  async run(): Promise<LaunchResult> {
    const { flags } = await this.parse(DesktopLaunch)
    const dashDash = this.argv.indexOf('--')
    const argv = dashDash >= 0 ? this.argv.slice(dashDash + 1) : []
    const { desktopLaunch } = await import('../../services/desktop/launch.js')
    const result = await desktopLaunch(await this.context(flags), flags, argv)
    if (!this.jsonEnabled()) this.log(`launched pid=${result.pid} log=${result.log}`)
    return result
  }
}
