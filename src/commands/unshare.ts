import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { idFlag } from '../flags.js'
import { requireId } from '../services/lease-ops.js'
import { unshareLease, type ShareResult } from '../services/share.js'
import { renderShare } from '../ui/share.js'

export default class Unshare extends BaseCommand<typeof Unshare> {
  static override summary = 'Stop sharing a lease with some users, its org, or anyone'
  static override description = 'Removes the named users, the org share (--org), or all sharing (--all). Prints the sharing that is left.'
  static override examples = [
    '<%= config.bin %> unshare blue-prawn --user friend@example.com',
    '<%= config.bin %> unshare --id cbx_0123456789ab --org',
    '<%= config.bin %> unshare blue-prawn --all',
  ]
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = {
    id: idFlag,
    user: Flags.string({ description: 'User (email) to remove; repeat for several', multiple: true, helpValue: 'EMAIL' }),
    org: Flags.boolean({ description: 'Remove the org share', default: false }),
    all: Flags.boolean({ description: 'Remove every user and the org share', default: false }),
  }

  async run(): Promise<ShareResult> {
    const { args, flags } = await this.parse(Unshare)
    const id = requireId(args.lease ?? flags.id)
    const result = await unshareLease(await this.context(), id, { users: flags.user ?? [], org: flags.org, all: flags.all })
    if (!this.jsonEnabled()) process.stdout.write(renderShare(result.leaseID, result.share))
    return result
  }
}
