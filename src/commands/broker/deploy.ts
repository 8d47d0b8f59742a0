import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { deployBroker, type BrokerDeployResult } from '../../services/broker-deploy.js'
import { brokerSettings } from '../../services/broker-settings.js'
import { readAllStdin } from '../../services/broker-secrets.js'

export default class BrokerDeploy extends BaseCommand<typeof BrokerDeploy> {
  static override summary = 'Deploy the packaged broker to Cloudflare Workers with wrangler'
  static override description =
    'Checks the settings (CRABBOX_PUBLIC_URL, a login setting, the secrets of every enabled provider) and the Cloudflare login (CLOUDFLARE_API_TOKEN or `wrangler login`), then sets every setting as a Worker secret (through wrangler on stdin, never on disk or in argv), runs `wrangler deploy` of the packaged Worker with its Durable Object migrations, waits for /v1/health at CRABBOX_PUBLIC_URL and prints the `crabbox login --url …` line for users. ' +
    'Settings: every CRABBOX_* broker setting of the environment, then --env-file (KEY=VALUE lines), then the same lines from stdin with --env-stdin. (Node itself also loads any --env-file file into the process environment, and fails with exit 9 on a path that does not exist.) ' +
    '--dry-run checks the settings and builds the bundle offline (wrangler deploy --dry-run) without changing anything.'
  static override examples = [
    '<%= config.bin %> broker deploy --env-file broker.env --dry-run',
    '<%= config.bin %> broker deploy --env-file broker.env --name crabbox --account-id 0123456789abcdef',
    'pass show crabbox/broker.env | <%= config.bin %> broker deploy --env-stdin',
  ]
  static override flags = {
    name: Flags.string({ description: "The Worker's name [default: wrangler.toml's, crabbox-coordinator]" }),
    'account-id': Flags.string({ description: 'Cloudflare account ID [default: CLOUDFLARE_ACCOUNT_ID, or the login’s only account]' }),
    'dry-run': Flags.boolean({ description: 'Check the settings and build the bundle offline; deploy nothing' }),
    'env-file': Flags.string({ description: 'A file of broker settings as KEY=VALUE lines' }),
    'env-stdin': Flags.boolean({ description: 'Read broker settings as KEY=VALUE lines from stdin (after --env-file)' }),
  }

  async run(): Promise<BrokerDeployResult> {
    const { flags } = this
    const settings = await brokerSettings({ file: flags['env-file'], stdin: flags['env-stdin'] ? readAllStdin : undefined }, process.env)
    const result = await deployBroker({
      name: flags.name,
      accountId: flags['account-id'],
      dryRun: flags['dry-run'],
      settings,
      env: process.env,
      progress: this.progress,
    })
    if (!this.jsonEnabled()) {
      const lines = [
        `${result.dryRun ? 'would deploy' : 'deployed'} worker=${result.name} url=${result.url}`,
        `providers: ${result.providers.join(', ')}`,
        `secrets (${result.secrets.length}): ${result.secrets.join(' ')}`,
        ...(result.bundle ? ['bundle:', ...result.bundle.files.map((file) => `  ${file.path} ${file.bytes} bytes`)] : []),
        `${result.dryRun ? 'users would log in with' : 'users log in with'}: ${result.loginCommand}`,
      ]
      this.log(lines.join('\n'))
    }
    return result
  }
}
