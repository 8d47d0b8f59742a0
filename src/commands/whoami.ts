import { BaseCommand } from '../base-command.js'
import { whoami, type WhoamiResult } from '../services/account.js'

export default class Whoami extends BaseCommand<typeof Whoami> {
  static override summary = 'Show who the broker thinks you are'
  static override description = 'Asks the configured broker (GET /v1/whoami) for your owner, org and how you authenticated.'
  static override examples = ['<%= config.bin %> whoami', '<%= config.bin %> whoami --json']

  async run(): Promise<WhoamiResult> {
    const result = await whoami(await this.context())
    if (!this.jsonEnabled()) {
      this.log(
        `user=${result.owner} org=${result.org} auth=${result.auth}${result.login ? ` login=${result.login}` : ''} broker=${result.broker}`,
      )
    }
    return result
  }
}
