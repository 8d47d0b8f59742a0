import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../../base-command.js'
import { readAllStdin, setSecret } from '../../../services/broker-secrets.js'

export default class BrokerSecretsSet extends BaseCommand<typeof BrokerSecretsSet> {
  static override summary = 'Set one secret of the deployed broker; the value is read from stdin'
  static override description = 'The value goes to `wrangler secret put` on stdin: never in argv, never written to disk, never printed.'
  static override examples = ['printf \'%s\\n\' "$TOKEN" | <%= config.bin %> broker secrets set CRABBOX_SHARED_TOKEN']
  static override args = { key: Args.string({ description: 'Secret name, e.g. CRABBOX_SHARED_TOKEN', required: true }) }
  static override flags = {
    name: Flags.string({ description: "The Worker's name [default: wrangler.toml's, crabbox-coordinator]" }),
    'account-id': Flags.string({ description: 'Cloudflare account ID [default: CLOUDFLARE_ACCOUNT_ID]' }),
  }

  async run(): Promise<{ name: string; key: string }> {
    const { args } = this
    const result = await setSecret(
      { name: this.flags.name, accountId: this.flags['account-id'], env: process.env },
      args.key,
      await readAllStdin(),
    )
    if (!this.jsonEnabled()) this.log(`set ${result.key} on ${result.name}`)
    return result
  }
}
