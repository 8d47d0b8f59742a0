import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { reclaimFlag } from '../../flags.js'
import type { RegisterResult } from '../../services/actions/index.js'

export default class ActionsRegister extends BaseCommand<typeof ActionsRegister> {
  static override summary = 'Register a GitHub Actions self-hosted runner on a lease and start it'
  static override description =
    'Asks the GitHub API for a registration token (GH_TOKEN, GITHUB_TOKEN or `gh auth token`), installs actions/runner on the lease when it is ' +
    'missing, configures it with the crabbox labels (crabbox, crabbox-<lease>, crabbox-profile-…, crabbox-class-…, crabbox-<slug>, actions.runnerLabels, --labels) and starts it. ' +
    "The token travels on the runner's stdin, never in a command line or a log."
  static override examples = ['<%= config.bin %> actions register --id blue-crab --repo acme/api']
  static override flags = {
    id: Flags.string({ description: 'Lease ID (cbx_…) or slug', helpValue: 'ID|SLUG', required: true }),
    repo: Flags.string({ description: 'GitHub repository owner/name (config actions.repo; default: the origin remote)' }),
    name: Flags.string({ description: 'Runner name (default crabbox-<lease ID>)' }),
    labels: Flags.string({ description: 'More runner labels, comma-separated', helpValue: 'LABEL,…' }),
    version: Flags.string({ description: 'actions/runner version to install when missing (config actions.runnerVersion; default latest)' }),
    ephemeral: Flags.boolean({
      description: 'One job, then the runner leaves GitHub (config actions.ephemeral; default true)',
      allowNo: true,
    }),
    reclaim: reclaimFlag,
  }

  async run(): Promise<RegisterResult> {
    const { flags } = await this.parse(ActionsRegister)
    const { registerRunner } = await import('../../services/actions/index.js')
    const labels = flags.labels
      ?.split(',')
      .map((label) => label.trim())
      .filter(Boolean)
    const result = await registerRunner(await this.context(flags), { ...flags, labels })
    if (!this.jsonEnabled())
      this.log(
        `registered runner ${result.runnerName} for ${result.repo} on ${result.leaseId}${result.ephemeral ? ' (ephemeral)' : ''} labels=${result.labels.join(',')}`,
      )
    return result
  }
}
