import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../../base-command.js'
import { unsetSecret } from '../../../services/broker-secrets.js'

export default class BrokerSecretsUnset extends BaseCommand<typeof BrokerSecretsUnset> {
  static override summary = 'Remove one secret from the deployed broker'
  static override examples = ['<%= config.bin %> broker secrets unset CRABBOX_HETZNER_TOKEN']
  static override args = { key: Args.string({ description: 'Secret name', required: true }) }
  static override flags = {
    name: Flags.string({ description: "The Worker's name [default: wrangler.toml's, crabbox-coordinator]" }),
    'account-id': Flags.string({ description: 'Cloudflare account ID [default: CLOUDFLARE_ACCOUNT_ID]' }),
  }

  async run(): Promise<{ name: string; key: string }> {
    const { args } = this
    const result = await unsetSecret({ name: this.flags.name, accountId: this.flags['account-id'], env: process.env }, args.key)
    if (!this.jsonEnabled()) this.log(`removed ${result.key} from ${result.name}`)
    return result
  }
}
