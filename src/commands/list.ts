import { BaseCommand } from '../base-command.js'
import { leaseFlags } from '../flags.js'
import { listLeases, type LeaseView } from '../services/lease-ops.js'
import { listPool, type PoolMachineView } from '../services/pool.js'
import { relativeTime, renderTable } from '../ui/table.js'

export default class List extends BaseCommand<typeof List> {
  static override summary = 'List active leases (the broker, or this machine in direct mode)'
  static override description =
    'On a terminal: a table with a header and expiry times relative to now. Piped: one lease per line, fields in a fixed order with the expiry as an ISO time, for scripts (or use --json). With the broker admin token: every machine the providers report, each with its live lease or marked orphan=missing-lease-label or orphan=no-active-lease. With --provider blacksmith-testbox and a broker configured, the listed testboxes are also reported to the broker as external runners (shown in the portal); a failed report is a warning.'
  static override examples = ['<%= config.bin %> list', '<%= config.bin %> list --json']
  static override flags = { provider: leaseFlags.provider }

  async run(): Promise<LeaseView[] | PoolMachineView[]> {
    const { flags } = await this.parse(List)
    const context = await this.context(flags)
    const pool = await listPool(context)
    if (pool) {
      if (!this.jsonEnabled()) this.showPool(pool)
      return pool
    }
    const leases = await listLeases(context, { syncRunners: true })
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

  /** The provider pool: a table on a terminal, else one machine per line ending in `lease=…` or `orphan=…`. */
  private showPool(pool: PoolMachineView[]): void {
    if (pool.length === 0) return this.log('no machines')
    if (process.stdout.isTTY) {
      const rows = pool.map((m) => [
        m.name,
        m.provider,
        m.status,
        m.serverType,
        m.host || '-',
        m.lease ?? '-',
        m.owner ?? '-',
        m.orphan ?? '',
      ])
      this.log(renderTable(['NAME', 'PROVIDER', 'STATUS', 'TYPE', 'HOST', 'LEASE', 'OWNER', 'ORPHAN'], rows).join('\n'))
      return
    }
    for (const m of pool) {
      const lease = m.lease ? `  lease=${m.lease}${m.owner ? `  owner=${m.owner}` : ''}` : ''
      this.log(`${m.name}  ${m.provider}  ${m.status}  ${m.serverType}  ${m.host || '-'}${lease}${m.orphan ? `  orphan=${m.orphan}` : ''}`)
    }
  }
}
