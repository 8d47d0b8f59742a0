import { BaseCommand } from '../../base-command.js'
import { userConfigPath } from '../../paths.js'

export default class ConfigPath extends BaseCommand<typeof ConfigPath> {
  static override summary = 'Print the path of the user config file'
  static override description =
    'CRABBOX_CONFIG when set, else $XDG_CONFIG_HOME/crabbox/config.yaml. `login` and `config set-broker` write here.'
  static override examples = ['<%= config.bin %> config path', '$EDITOR "$(<%= config.bin %> config path)"']

  async run(): Promise<{ path: string }> {
    const path = userConfigPath()
    if (!this.jsonEnabled()) this.log(path)
    return { path }
  }
}
