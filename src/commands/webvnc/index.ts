import { Flags } from '@oclif/core'
import { leaseFlags } from '../../flags.js'
import { BaseCommand } from '../../base-command.js'

export default class WebVnc extends BaseCommand<typeof WebVnc> {
  static override summary = "Bridge a desktop lease's VNC to the portal's WebVNC viewer through the broker"
  static override description =
    "Holds a small pool of agent sockets to the broker (each opened with a fresh one-use ticket) and relays RFB bytes between each viewer and the runner's loopback VNC over the lease's pooled SSH connection. " +
    'Reconnects with backoff and refills the pool; runs until stopped (`webvnc daemon start` keeps it running after the shell exits). ' +
    'When a layer fails it prints `problem:` and the `rescue:` commands that get you going again.'
  static override examples = [
    '<%= config.bin %> webvnc --id blue-crab --open',
    '<%= config.bin %> webvnc --id blue-crab --local-port 5901',
    '<%= config.bin %> webvnc daemon start --id blue-crab',
  ]
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug (a desktop lease)', required: true }),
    'local-port': Flags.integer({
      summary: "Also serve the runner's VNC on this local port (127.0.0.1), for native viewers",
      min: 0,
      max: 65535,
    }),
    network: leaseFlags.network,
    open: Flags.boolean({ summary: 'Open the portal WebVNC page in the browser once the bridge is up' }),
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(WebVnc)
    const { runBridge } = await import('../../services/webvnc/index.js')
    await runBridge(
      await this.context(),
      { id: flags.id, localPort: flags['local-port'], open: flags.open },
      { out: (line) => this.log(line), err: (line) => process.stderr.write(`${line}\n`) },
    )
  }
}
