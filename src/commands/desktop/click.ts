import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { desktopTargetFlags } from '../../flags.js'

export default class DesktopClick extends BaseCommand<typeof DesktopClick> {
  static override summary = "Click at a point of a lease's desktop"
  static override examples = ['<%= config.bin %> desktop click --id blue-crab --x 640 --y 400']
  static override flags = {
    ...desktopTargetFlags,
    x: Flags.integer({ description: 'Pixels from the left', required: true, min: 0 }),
    y: Flags.integer({ description: 'Pixels from the top', required: true, min: 0 }),
  }

  async run(): Promise<{ leaseId: string }> {
    const { flags } = await this.parse(DesktopClick)
    const { desktopClick } = await import('../../services/desktop/input.js')
    return desktopClick(await this.context(flags), flags)
  }
}
