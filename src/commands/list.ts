import { BaseCommand } from '../base-command.js'
import { leaseFlags } from '../flags.js'
import { listLeases, type LeaseView } from '../services/lease-ops.js'
import { relativeTime, renderTable } from '../ui/table.js'

export default class List extends BaseCommand<typeof List> {
  static override summary = 'List active leases (the broker, or this machine in direct mode)'
  static override description =
    'On a terminal: a table with a header and expiry times relative to now. Piped: one lease per line, fields in a fixed order with the expiry as an ISO time, for scripts (or use --json).'
  static override examples = ['<%= config.bin %> list', '<%= config.bin %> list --json']
  static override flags = { provider: leaseFlags.provider }

  async run(): Promise<LeaseView[]> {
    const { flags } = await this.parse(List)
    const leases = await listLeases(await this.context(flags))
    if (!this.jsonEnabled()) {
      if (leases.length === 0) this.log('no active leases')
      else if (process.stdout.isTTY) {
        const rows = leases.map((l) => [
          l.id,
          l.slug,
          l.provider,
          `${l.user}@${l.host}:${l.port}`,
          `${l.state}${l.keep ? ' (kept)' : ''}`,
          l.expiresAt ? relativeTime(l.expiresAt) : '-',
        ])
        this.log(renderTable(['ID', 'SLUG', 'PROVIDER', 'SSH', 'STATE', 'EXPIRES'], rows).join('\n'))
      } else {
        for (const l of leases)
          this.log(
            `${l.id}  ${l.slug}  ${l.provider}  ${l.user}@${l.host}:${l.port}  ${l.state}${l.keep ? '  keep' : ''}${l.expiresAt ? `  expires=${l.expiresAt}` : ''}`,
          )
      }
    }
    return leases
  }
}
