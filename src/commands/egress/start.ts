import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { leaseFlags } from '../../flags.js'

export default class EgressStart extends BaseCommand<typeof EgressStart> {
  static override summary = 'Let a lease reach allow-listed sites through this machine (both halves of the egress bridge)'
  static override description =
    'Copies the egress client to the lease over SSH and runs it there as an HTTP CONNECT proxy on loopback (default 127.0.0.1:3128), ' +
    'then runs the host half here: each destination the lease asks for is opened from this machine only when --profile or --allow names it; ' +
    'anything else is refused with the reason in the proxy reply and a log line. The two halves meet in the broker through one-use tickets of one session ' +
    '(the newest session wins). Runs until stopped; --daemon keeps it running in the background (`egress status`, `egress stop`).'
  static override examples = [
    '<%= config.bin %> egress start --id blue-crab --profile discord',
    '<%= config.bin %> egress start --id blue-crab --allow example.com,*.example.net --daemon',
  ]
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug', required: true }),
    provider: leaseFlags.provider,
    network: leaseFlags.network,
    coordinator: Flags.string({
      summary: 'Broker URL for egress (default: broker.url); Cloudflare Access credentials go with it',
      helpValue: 'URL',
    }),
    profile: Flags.string({ summary: 'Built-in allow-list: discord or slack', helpValue: 'NAME' }),
    allow: Flags.string({ summary: 'Allowed hosts, comma separated; *.host allows host and its subdomains', helpValue: 'HOSTS' }),
    listen: Flags.string({
      summary: "The proxy's address on the lease (loopback only)",
      default: '127.0.0.1:3128',
      helpValue: 'HOST:PORT',
    }),
    daemon: Flags.boolean({ summary: 'Run in the background (pid and log under <state>/egress/)' }),
  }

  async run(): Promise<unknown> {
    const { flags } = await this.parse(EgressStart)
    const egress = await import('../../services/egress/index.js')
    const context = await this.context({ provider: flags.provider })
    if (flags.daemon) {
      const result = await egress.startEgressDaemon(context, flags, this.argv)
      if (!this.jsonEnabled()) {
        this.log(`${result.alreadyRunning ? 'already running' : 'started'}: egress daemon for ${result.leaseId} (pid ${result.pid})`)
        if (result.listen) this.log(`lease proxy: http://${result.listen}`)
        this.log(`log: ${result.logPath}`)
      }
      return result
    }
    await egress.runEgressStart(context, flags, { out: (line) => this.log(line), err: (line) => process.stderr.write(`${line}\n`) })
    return undefined
  }
}
