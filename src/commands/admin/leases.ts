import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { limitFlag } from '../../flags.js'
import { LeaseState, type LeaseRecord } from '../../protocol/leases.js'
import { adminListLeases } from '../../services/admin.js'
import { renderAdminLeases } from '../../ui/admin.js'

export default class AdminLeases extends BaseCommand<typeof AdminLeases> {
  static override summary = "List every owner's leases (admin token)"
  static override description = 'Asks the broker (GET /v1/admin/leases) for leases of every owner, newest first. Needs broker.adminToken.'
  static override examples = [
    '<%= config.bin %> admin leases --state active',
    '<%= config.bin %> admin leases --owner someone@example.com --json',
  ]
  static override flags = {
    state: Flags.option({ options: LeaseState.options, description: 'Only leases in this state' })(),
    owner: Flags.string({ description: 'Only leases of this owner', helpValue: 'EMAIL' }),
    org: Flags.string({ description: 'Only leases of this org', helpValue: 'ORG' }),
    limit: limitFlag({ description: 'At most this many leases (the broker caps it at 500)', default: 100 }),
  }

  async run(): Promise<LeaseRecord[]> {
    const { flags } = await this.parse(AdminLeases)
    const leases = await adminListLeases(await this.context(), {
      state: flags.state,
      owner: flags.owner,
      org: flags.org,
      limit: flags.limit,
    })
    if (!this.jsonEnabled()) process.stdout.write(renderAdminLeases(leases))
    return leases
  }
}
