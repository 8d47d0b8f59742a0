import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { login, type LoginResult } from '../services/account.js'
import { readStdinSecrets } from '../services/config.js'

export default class Login extends BaseCommand<typeof Login> {
  static override summary = 'Log in to a crabbox broker with GitHub (or store a shared token)'
  static override description =
    'Starts a GitHub login on the broker, opens the browser (or prints the URL), waits for it to finish and stores broker.url and broker.token in the user config (0600). With --token-stdin it verifies and stores a shared token instead.'
  static override examples = [
    '<%= config.bin %> login --url https://crabbox.example.com',
    '<%= config.bin %> login --url https://crabbox.example.com --no-browser',
    'printf "%s\\n" "$CRABBOX_SHARED_TOKEN" | <%= config.bin %> login --url https://crabbox.example.com --token-stdin',
  ]
  static override flags = {
    url: Flags.string({ summary: 'Broker URL (default: the configured broker.url)' }),
    provider: Flags.string({ summary: 'Provider the broker should use for your leases (stored as provider)' }),
    'token-stdin': Flags.boolean({ summary: 'Read a shared broker token from stdin instead of the GitHub flow' }),
    'no-browser': Flags.boolean({ summary: 'Print the login URL instead of opening a browser' }),
  }

  async run(): Promise<LoginResult> {
    const { flags } = await this.parse(Login)
    const [token] = flags['token-stdin'] ? await readStdinSecrets(['broker token']) : []
    const result = await login(await this.context(), { url: flags.url, provider: flags.provider, token, noBrowser: flags['no-browser'] })
    if (!this.jsonEnabled()) {
      const { identity } = result
      this.log(
        `logged in broker=${result.broker} provider=${result.provider ?? '-'} user=${identity.owner} org=${identity.org} config=${result.config}`,
      )
    }
    return result
  }
}
