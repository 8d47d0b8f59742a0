import { BaseCommand } from '../../base-command.js'
import { showConfig, type ConfigView } from '../../services/config.js'
import { renderConfigView } from '../../ui/config.js'

export default class ConfigShow extends BaseCommand<typeof ConfigShow> {
  static override summary = 'Show the merged configuration and where each value came from'
  static override description =
    'Merges flags, CRABBOX_* environment, the repo .crabbox.yaml at the git root and the user config over the defaults. Tokens are shown only as set or missing.'
  static override examples = ['<%= config.bin %> config show', '<%= config.bin %> config show --json | jq .sources']

  async run(): Promise<ConfigView> {
    const view = showConfig(await this.context())
    if (!this.jsonEnabled()) process.stdout.write(renderConfigView(view))
    return view
  }
}
