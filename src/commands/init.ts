import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { initRepo, type InitResult } from '../services/init.js'

export default class Init extends BaseCommand<typeof Init> {
  static override summary = 'Set up crabbox in this repository'
  static override description =
    'Writes .crabbox.yaml and an agent skill (.agents/skills/crabbox/SKILL.md) at the git root. Refuses to overwrite either file (exit 2) unless --force is given.'
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init --force']
  static override flags = {
    force: Flags.boolean({ summary: 'Overwrite existing files' }),
  }

  async run(): Promise<InitResult> {
    const { flags } = await this.parse(Init)
    const context = await this.context()
    const result = await initRepo({ repoRoot: context.repoRoot ?? context.cwd, force: flags.force })
    if (!this.jsonEnabled()) for (const path of result.written) this.log(`wrote ${path}`)
    return result
  }
}
