import { BaseCommand } from '../../base-command.js'
import { userConfigLocation, type UserConfigLocation } from '../../paths.js'

const why: Record<UserConfigLocation['source'], string> = {
  CRABBOX_CONFIG: 'CRABBOX_CONFIG names it; no other config file is read',
  macos: 'the macOS user config folder',
  'macos-xdg': 'the only user config file on this Mac is under ~/.config',
  xdg: 'the XDG user config folder',
}

export default class ConfigPath extends BaseCommand<typeof ConfigPath> {
  static override summary = 'Print the path of the user config file'
  static override description =
    'CRABBOX_CONFIG when set (then it is the only config file read, repo files included); on macOS ' +
    '~/Library/Application Support/crabbox/config.yaml (~/.config/crabbox/config.yaml is read too, and used when it is the only one); ' +
    'elsewhere $XDG_CONFIG_HOME/crabbox/config.yaml. The path goes to stdout, which one was used and why to stderr. ' +
    '`login` and `config set-broker` write here.'
  static override examples = ['<%= config.bin %> config path', '$EDITOR "$(<%= config.bin %> config path)"']

  async run(): Promise<UserConfigLocation & { reason: string }> {
    const location = userConfigLocation()
    const reason = why[location.source]
    if (!this.jsonEnabled()) {
      this.log(location.path)
      process.stderr.write(`${reason}${location.alsoRead ? `; also read first: ${location.alsoRead}` : ''}\n`)
    }
    return { ...location, reason }
  }
}
