import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { usageError } from '../errors.js'
import { idFlag, leaseFlags, oneId } from '../flags.js'
import { requireId, stopAllLeases, stopLease, type StopResult } from '../services/lease-ops.js'

export default class Stop extends BaseCommand<typeof Stop> {
  static override summary = 'Release a lease (idempotent)'
  static override description =
    '`--all` releases every active lease you own (kept ones too): through a broker the leases you own, in direct mode the ones this machine holds.'
  static override examples = [
    '<%= config.bin %> stop blue-prawn',
    '<%= config.bin %> stop --id cbx_0123456789ab',
    '<%= config.bin %> stop --all',
  ]
  static override args = { lease: Args.string({ description: 'Lease ID or slug' }) }
  static override flags = {
    id: idFlag,
    provider: leaseFlags.provider,
    all: Flags.boolean({ description: 'Release every active lease you own', default: false }),
  }

  async run(): Promise<StopResult | { leases: StopResult[] }> {
    const { args, flags } = await this.parse(this.ctor as typeof Stop)
    if (flags.all) {
      if (args.lease ?? flags.id)
        throw usageError('--all releases every lease you own: give it no lease', 'Run crabbox stop --all, or crabbox stop <lease>.')
      const leases = await stopAllLeases(await this.context(flags))
      if (!this.jsonEnabled()) {
        for (const result of leases) this.log(`released ${result.id}${result.slug ? ` (${result.slug})` : ''}`)
        if (leases.length === 0) this.log('no active leases')
      }
      return { leases }
    }
    const result = await stopLease(requireId(oneId(args.lease, flags.id, 'lease')), await this.context(flags))
    if (!this.jsonEnabled())
      this.log(result.released ? `released ${result.id}${result.slug ? ` (${result.slug})` : ''}` : `${result.id} is already released`)
    return result
  }
}
