import { Flags } from '@oclif/core'
import { BaseCommand } from '../../../base-command.js'
import { listSecrets } from '../../../services/broker-secrets.js'

export default class BrokerSecretsList extends BaseCommand<typeof BrokerSecretsList> {
  static override summary = "List the names of the deployed broker's secrets (through wrangler)"
  static override examples = ['<%= config.bin %> broker secrets list', '<%= config.bin %> broker secrets list --name crabbox --json']
  static override flags = {
    name: Flags.string({ description: "The Worker's name [default: wrangler.toml's, crabbox-coordinator]" }),
    'account-id': Flags.string({ description: 'Cloudflare account ID [default: CLOUDFLARE_ACCOUNT_ID]' }),
  }

  async run(): Promise<{ name: string; secrets: string[] }> {
    const result = await listSecrets({ name: this.flags.name, accountId: this.flags['account-id'], env: process.env })
    if (!this.jsonEnabled()) this.log(result.secrets.join('\n'))
    return result
  }
}
