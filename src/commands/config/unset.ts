import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { unsetConfigValue, type ConfigValueResult } from '../../services/config.js'

export default class ConfigUnset extends BaseCommand<typeof ConfigUnset> {
  static override summary = 'Remove one config key from the user config (or the repo file with --repo)'
  static override examples = ['<%= config.bin %> config unset ssh.key', '<%= config.bin %> config unset class --repo']
  static override args = { key: Args.string({ description: 'Dotted config key, e.g. ssh.key', required: true }) }
  static override flags = { repo: Flags.boolean({ summary: 'Edit .crabbox.yaml at the git root instead of the user config' }) }

  async run(): Promise<ConfigValueResult> {
    const { args, flags } = await this.parse(ConfigUnset)
    const result = await unsetConfigValue(args.key, { repo: flags.repo, cwd: process.cwd() })
    if (!this.jsonEnabled()) this.log(`unset ${result.key}  (${result.file})`)
    return result
  }
}
