import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { desktopTargetFlags } from '../../flags.js'

export default class DesktopType extends BaseCommand<typeof DesktopType> {
  static override summary = "Type text into the focused window of a lease's desktop"
  static override description =
    'Letters, digits and spaces (up to 64) are typed key by key with xdotool; anything else (symbols, newlines, long text) goes through the clipboard, as desktop paste.'
  static override examples = ['<%= config.bin %> desktop type --id blue-crab --text "hello world"']
  static override flags = {
    ...desktopTargetFlags,
    text: Flags.string({ description: 'Text to type', required: true }),
  }

  async run(): Promise<{ leaseId: string; via: 'keys' | 'paste' }> {
    const { flags } = await this.parse(DesktopType)
    const { desktopType } = await import('../../services/desktop/input.js')
    return desktopType(await this.context(flags), flags)
  }
}
