import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { monthFlag } from '../flags.js'
import { USAGE_SCOPES, type UsageResponse } from '../protocol/usage.js'
import { fetchUsage } from '../services/usage.js'
import { renderUsage } from '../ui/usage.js'

export default class Usage extends BaseCommand<typeof Usage> {
  static override summary = "Show a month's leases, runtime and spend against the broker's caps"
  static override description =
    'Asks the broker (GET /v1/usage) for one month of leases: counts, runtime, estimated cost (runtime at the hourly rate) and reserved cost (what the monthly caps count: each lease reserves its TTL at its hourly rate), grouped by owner, org, provider and server type, with each cap in force (off when 0). Without the admin token the broker shows your own usage only.'
  static override examples = [
    '<%= config.bin %> usage',
    '<%= config.bin %> usage --month 2026-05 --json',
    '<%= config.bin %> usage --scope org --org acme',
    '<%= config.bin %> usage --scope all',
  ]
  static override flags = {
    scope: Flags.option({
      options: USAGE_SCOPES,
      description: 'Whose usage: user (default), org or all (org and all need the admin token)',
    })(),
    user: Flags.string({ description: 'With --scope user: this user instead of you (admin)', helpValue: 'EMAIL' }),
    org: Flags.string({ description: 'With --scope org: this org instead of yours (admin)', helpValue: 'ORG' }),
    month: monthFlag({ description: 'Month in UTC (default: the current one)' }),
  }

  async run(): Promise<UsageResponse> {
    const { flags } = await this.parse(Usage)
    const result = await fetchUsage(await this.context(), { scope: flags.scope, user: flags.user, org: flags.org, month: flags.month })
    if (!this.jsonEnabled()) process.stdout.write(renderUsage(result))
    return result
  }
}
