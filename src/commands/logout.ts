import { BaseCommand } from '../base-command.js'
import { logout, type LogoutResult } from '../services/account.js'

export default class Logout extends BaseCommand<typeof Logout> {
  static override summary = 'Forget the stored broker token'
  static override description =
    'Removes broker.token (and the legacy coordinatorToken) from the user config; the broker URL and provider stay.'
  static override examples = ['<%= config.bin %> logout']

  async run(): Promise<LogoutResult> {
    const result = await logout(await this.context())
    if (!this.jsonEnabled())
      this.log(result.removed ? `logged out config=${result.config}` : `no stored token to remove config=${result.config}`)
    return result
  }
}
