import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { desktopTargetFlags } from '../flags.js'
import type { ScreenshotResult } from '../services/desktop/screenshot.js'

export default class Screenshot extends BaseCommand<typeof Screenshot> {
  static override summary = "Save a PNG of a lease's desktop"
  static override description = 'Takes the screenshot on the runner (scrot, else ImageMagick import, else ffmpeg) and copies the PNG back.'
  static override examples = ['<%= config.bin %> screenshot --id blue-crab --output screen.png']
  static override flags = {
    ...desktopTargetFlags,
    output: Flags.string({ char: 'o', description: 'Where to write the PNG (default crabbox-<slug>-screenshot.png)' }),
  }

  async run(): Promise<ScreenshotResult> {
    const { flags } = await this.parse(Screenshot)
    const { screenshot } = await import('../services/desktop/screenshot.js')
    const result = await screenshot(await this.context(flags), flags)
    if (!this.jsonEnabled()) this.log(`${result.output} ${result.width}x${result.height} ${result.bytes} bytes`)
    return result
  }
}
