import { Args } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { parseDuration } from '../config/schema.js'
import { idFlag, leaseDurationFlag } from '../flags.js'
import { heartbeatCommand, type BeatResult } from '../services/heartbeat.js'
import { requireId } from '../services/lease-ops.js'

export default class Heartbeat extends BaseCommand<typeof Heartbeat> {
  static override summary = 'Mark a lease active now (work done over plain ssh) and print its new expiry'
  static override examples = [
    '<%= config.bin %> heartbeat blue-crab',
    '<%= config.bin %> heartbeat --id cbx_0123456789ab --idle-timeout 2h --json',
  ]
  static override args = { lease: Args.string({ description: 'Lease ID or slug', ignoreStdin: true }) }
  static override flags = {
    id: idFlag,
    'idle-timeout': leaseDurationFlag({ description: 'Also set the idle timeout, e.g. 45m (at most 24h)' }),
  }

  async run(): Promise<BeatResult> {
    const { args, flags } = await this.parse(Heartbeat)
    const result = await heartbeatCommand(
      await this.context(),
      requireId(args.lease ?? flags.id),
      flags['idle-timeout'] === undefined ? undefined : parseDuration(flags['idle-timeout']),
    )
    if (!this.jsonEnabled()) {
      const idle = result.idleTimeoutSeconds === undefined ? '' : ` idle_timeout=${result.idleTimeoutSeconds}s`
      this.log(`${result.leaseID} expires=${result.expiresAt ?? 'unknown'}${idle}`)
    }
    return result
  }
}
