import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { leaseFlags } from '../../flags.js'

export default class EgressClient extends BaseCommand<typeof EgressClient> {
  static override summary = 'Run only the lease half of egress here: an HTTP CONNECT proxy on loopback'
  static override description =
    '`egress start` runs this half on the lease for you (as a single-file bundle over SSH, with no crabbox install there). ' +
    'Use it on a machine that has crabbox and broker credentials: it opens the client socket of an egress session (with --ticket, ' +
    "else a ticket minted with this machine's credentials) and serves CONNECT on --listen."
  static override examples = ['<%= config.bin %> egress client --id blue-crab --session egress_0123456789abcdef --listen 127.0.0.1:3128']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug', required: true }),
    provider: leaseFlags.provider,
    coordinator: Flags.string({ summary: 'Broker URL for egress (default: broker.url)', helpValue: 'URL' }),
    ticket: Flags.string({ summary: 'A client ticket for the first connection (egress_…)', helpValue: 'TICKET' }),
    session: Flags.string({ summary: 'The egress session ID (default: a new one)', helpValue: 'ID' }),
    listen: Flags.string({ summary: "The proxy's address (loopback only)", default: '127.0.0.1:3128', helpValue: 'HOST:PORT' }),
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(EgressClient)
    const { runEgressClient } = await import('../../services/egress/index.js')
    await runEgressClient(await this.context({ provider: flags.provider }), flags, {
      out: (line) => this.log(line),
      err: (line) => process.stderr.write(`${line}\n`),
    })
  }
}
