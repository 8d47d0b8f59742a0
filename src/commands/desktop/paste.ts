import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { desktopTargetFlags } from '../../flags.js'

export default class DesktopPaste extends BaseCommand<typeof DesktopPaste> {
  static override summary = "Put text on a lease's clipboard and paste it (Ctrl+V) into the focused window"
  static override examples = [
    '<%= config.bin %> desktop paste --id blue-crab --text "hello, world"',
    'echo "from stdin" | <%= config.bin %> desktop paste --id blue-crab',
  ]
  static override flags = {
    ...desktopTargetFlags,
    text: Flags.string({ description: 'Text to paste (default: read stdin)' }),
  }

  async run(): Promise<{ leaseId: string }> {
    const { flags } = await this.parse(DesktopPaste)
    const text = flags.text ?? (process.stdin.isTTY ? '' : await readStdin())
    const { desktopPaste } = await import('../../services/desktop/input.js')
    return desktopPaste(await this.context(flags), { ...flags, text })
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
