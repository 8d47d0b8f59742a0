import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { usageError } from '../../errors.js'
import { idFlag } from '../../flags.js'
import type { LeaseRecord } from '../../protocol/leases.js'
import { adminDeleteLease } from '../../services/admin.js'
import { requireId } from '../../services/lease-ops.js'
import { renderAdminAction } from '../../ui/admin.js'

export default class AdminDelete extends BaseCommand<typeof AdminDelete> {
  static override summary = 'Release a lease and delete its machine, even a kept one (admin token, --force)'
  static override description =
    'Releases the lease whoever owns it and deletes its machine, ignoring keep (POST /v1/admin/leases/{id}/delete). Asks for --force because it cannot be undone. Needs broker.adminToken.'
  static override examples = ['<%= config.bin %> admin delete cbx_0123456789ab --force']
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = {
    id: idFlag,
    force: Flags.boolean({ description: 'Confirm the deletion (required)', default: false }),
  }

  async run(): Promise<LeaseRecord> {
    const { args, flags } = await this.parse(AdminDelete)
    const id = requireId(args.lease ?? flags.id)
    if (!flags.force)
      throw usageError(
        `admin delete deletes the machine of ${id} even if it is kept, and needs --force to do it`,
        `Rerun as \`crabbox admin delete ${id} --force\`.`,
      )
    const lease = await adminDeleteLease(await this.context(), id)
    if (!this.jsonEnabled()) process.stdout.write(renderAdminAction('deleted', lease))
    return lease
  }
}
