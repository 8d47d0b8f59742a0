import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { idFlag } from '../../flags.js'
import type { LeaseRecord } from '../../protocol/leases.js'
import { adminReleaseLease } from '../../services/admin.js'
import { requireId } from '../../services/lease-ops.js'
import { renderAdminAction } from '../../ui/admin.js'

export default class AdminRelease extends BaseCommand<typeof AdminRelease> {
  static override summary = "Release anyone's lease (admin token)"
  static override description =
    'Releases the lease whoever owns it (POST /v1/admin/leases/{id}/release). With --delete its machine is deleted too; a kept machine stays unless --delete is given. Needs broker.adminToken.'
  static override examples = [
    '<%= config.bin %> admin release cbx_0123456789ab',
    '<%= config.bin %> admin release --id blue-prawn --delete',
  ]
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = {
    id: idFlag,
    delete: Flags.boolean({ description: 'Also delete the machine', default: false }),
  }

  async run(): Promise<LeaseRecord> {
    const { args, flags } = await this.parse(AdminRelease)
    const lease = await adminReleaseLease(await this.context(), requireId(args.lease ?? flags.id), { delete: flags.delete })
    if (!this.jsonEnabled()) process.stdout.write(renderAdminAction('released', lease))
    return lease
  }
}
