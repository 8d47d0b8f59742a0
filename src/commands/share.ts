import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { idFlag } from '../flags.js'
import { requireId } from '../services/lease-ops.js'
import { shareLease, type ShareResult } from '../services/share.js'
import { renderShare } from '../ui/share.js'

export default class Share extends BaseCommand<typeof Share> {
  static override summary = 'Share a lease with other users or its org, or show who it is shared with'
  static override description =
    'Adds users (by email) or the whole org of the lease to its sharing, with the role use (see it, heartbeat it, run on it) or manage (also change its sharing and stop it). Without --user or --org, or with --list, it shows the current sharing. Only the owner, a manager or an admin may change it.'
  static override examples = [
    '<%= config.bin %> share blue-prawn --user friend@example.com',
    '<%= config.bin %> share --id cbx_0123456789ab --org --role manage',
    '<%= config.bin %> share blue-prawn --list --json',
  ]
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = {
    id: idFlag,
    user: Flags.string({ description: 'User (email) to share with; repeat for several', multiple: true, helpValue: 'EMAIL' }),
    org: Flags.boolean({ description: "Share with everyone in the lease's org", default: false }),
    role: Flags.option({ options: ['use', 'manage'] as const, description: 'Role to grant', default: 'use' })(),
    list: Flags.boolean({ description: 'Only show the current sharing', default: false, exclusive: ['user', 'org'] }),
  }

  async run(): Promise<ShareResult> {
    const { args, flags } = await this.parse(Share)
    const id = requireId(args.lease ?? flags.id)
    const change = flags.list ? undefined : { users: flags.user ?? [], org: flags.org, role: flags.role }
    const result = await shareLease(await this.context(), id, change)
    if (!this.jsonEnabled()) process.stdout.write(renderShare(result.leaseID, result.share))
    return result
  }
}
