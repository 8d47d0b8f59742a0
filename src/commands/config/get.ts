import { Args } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { getConfigValue, type ConfigValueResult } from '../../services/config.js'

export default class ConfigGet extends BaseCommand<typeof ConfigGet> {
  static override summary = 'Print the merged value of one config key'
  static override description =
    'Flags, CRABBOX_* environment, the repo file and the user config merged, as `config show` does. Tokens are shown only as set or missing; a list prints one item per line; an unset key prints nothing.'
  static override examples = ['<%= config.bin %> config get ssh.key', '<%= config.bin %> config get provider --json']
  static override args = { key: Args.string({ description: 'Dotted config key, e.g. ssh.key', required: true }) }

  async run(): Promise<ConfigValueResult> {
    const { args } = await this.parse(ConfigGet)
    const result = getConfigValue(await this.context(), args.key)
    if (!this.jsonEnabled() && result.value !== undefined) {
      const value = result.value
      this.log(Array.isArray(value) ? value.join('\n') : typeof value === 'object' ? JSON.stringify(value) : String(value))
    }
    return result
  }
}
