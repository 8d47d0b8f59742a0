import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { desktopTargetFlags } from '../../flags.js'

export default class DesktopKey extends BaseCommand<typeof DesktopKey> {
  static override summary = "Send key presses (xdotool names) to a lease's desktop"
  static override examples = [
    '<%= config.bin %> desktop key --id blue-crab ctrl+l',
    '<%= config.bin %> desktop key --id blue-crab --keys "ctrl+a Delete"',
  ]
  static override usage = ['<%= command.id %> [FLAGS] <keys…>']
  static override strict = false
  static override flags = {
    ...desktopTargetFlags,
    keys: Flags.string({ description: 'Keys, space-separated (or give them as arguments)' }),
  }

  async run(): Promise<{ leaseId: string }> {
    const { flags, argv } = await this.parse(DesktopKey)
    const keys = [...(flags.keys ? [flags.keys] : []), ...(argv as string[])]
    const { desktopKey } = await import('../../services/desktop/input.js')
    return desktopKey(await this.context(flags), { ...flags, keys })
  }
}
