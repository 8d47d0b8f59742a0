import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { leaseFlags } from '../../flags.js'

export default class EgressHost extends BaseCommand<typeof EgressHost> {
  static override summary = 'Run only the host half of egress here (the side that opens allow-listed destinations)'
  static override description =
    "`egress start` runs this for you. Opens the host socket of an egress session (with --ticket, else a ticket minted with this machine's credentials; " +
    'later reconnects mint fresh ones) and opens only the destinations --profile or --allow names.'
  static override examples = ['<%= config.bin %> egress host --id blue-crab --session egress_0123456789abcdef --allow example.com']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug', required: true }),
    provider: leaseFlags.provider,
    coordinator: Flags.string({ summary: 'Broker URL for egress (default: broker.url)', helpValue: 'URL' }),
    ticket: Flags.string({ summary: 'A host ticket for the first connection (egress_…)', helpValue: 'TICKET' }),
    session: Flags.string({ summary: 'The egress session ID (default: a new one)', helpValue: 'ID' }),
    profile: Flags.string({ summary: 'Built-in allow-list: discord or slack', helpValue: 'NAME' }),
    allow: Flags.string({ summary: 'Allowed hosts, comma separated; *.host allows host and its subdomains', helpValue: 'HOSTS' }),
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(EgressHost)
    const { runEgressHost } = await import('../../services/egress/index.js')
    await runEgressHost(await this.context({ provider: flags.provider }), flags, {
      out: (line) => this.log(line),
      err: (line) => process.stderr.write(`${line}\n`),
    })
  }
}
