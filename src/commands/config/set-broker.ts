import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { readStdinSecrets, setBroker, type SetBrokerResult } from '../../services/config.js'

export default class ConfigSetBroker extends BaseCommand<typeof ConfigSetBroker> {
  static override summary = 'Store the broker URL and tokens in the user config, without contacting the broker'
  static override description =
    'Tokens are read from stdin, one per line and trimmed: the broker token first, then the admin token when both flags are given. The file is written 0600 in a 0700 folder; other keys and comments are kept.'
  static override examples = [
    '<%= config.bin %> config set-broker --url https://crabbox.example.com',
    'printf "%s\\n" "$CRABBOX_TOKEN" | <%= config.bin %> config set-broker --url https://crabbox.example.com --token-stdin',
    'printf "%s\\n%s\\n" "$TOKEN" "$ADMIN" | <%= config.bin %> config set-broker --url https://crabbox.example.com --token-stdin --admin-token-stdin --provider aws',
  ]
  static override flags = {
    url: Flags.string({ summary: 'Broker base URL', required: true }),
    'token-stdin': Flags.boolean({ summary: 'Read the broker token from stdin' }),
    'admin-token-stdin': Flags.boolean({ summary: 'Read the admin token from stdin (after the broker token)' }),
    provider: Flags.string({ summary: 'Provider the broker should use (sets provider and broker.provider)' }),
  }

  async run(): Promise<SetBrokerResult> {
    const { flags } = await this.parse(ConfigSetBroker)
    const wanted = [...(flags['token-stdin'] ? ['broker token'] : []), ...(flags['admin-token-stdin'] ? ['admin token'] : [])]
    const secrets = await readStdinSecrets(wanted)
    const result = await setBroker({
      url: flags.url,
      provider: flags.provider,
      token: flags['token-stdin'] ? secrets.shift() : undefined,
      adminToken: flags['admin-token-stdin'] ? secrets.shift() : undefined,
    })
    if (!this.jsonEnabled()) {
      this.log(
        `broker=${result.broker} token=${result.token} admin-token=${result.adminToken}${result.provider ? ` provider=${result.provider}` : ''} config=${result.config}`,
      )
    }
    return result
  }
}
