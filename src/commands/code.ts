import { Flags } from '@oclif/core'
import { leaseFlags } from '../flags.js'
import { BaseCommand } from '../base-command.js'

export default class Code extends BaseCommand<typeof Code> {
  static override summary = "Bridge code-server on a lease's runner to the portal's editor through the broker"
  static override description =
    "Holds the code bridge's agent socket to the broker (opened with a one-use ticket); the broker tunnels the portal's requests and WebSockets for /portal/leases/<id>/code/ through it to code-server on the runner's loopback (127.0.0.1:8080), over the lease's pooled SSH connection. " +
    'Reconnects with backoff; runs until stopped. When a layer fails it prints `problem:` and the `rescue:` commands that get you going again.'
  static override examples = ['<%= config.bin %> code --id blue-crab --open', '<%= config.bin %> code --id blue-crab --local-port 8080']
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug (a lease made with --code)', required: true }),
    'local-port': Flags.integer({
      summary: "Also forward this local port (127.0.0.1) straight to the runner's code-server",
      min: 0,
      max: 65535,
    }),
    network: leaseFlags.network,
    open: Flags.boolean({ summary: "Open the portal's code page in the browser once the bridge is up" }),
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(Code)
    const { runCodeBridge } = await import('../services/code/index.js')
    await runCodeBridge(
      await this.context(),
      { id: flags.id, localPort: flags['local-port'], open: flags.open },
      { out: (line) => this.log(line), err: (line) => process.stderr.write(`${line}\n`) },
    )
  }
}
