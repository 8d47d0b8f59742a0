import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { desktopTargetFlags } from '../flags.js'

export default class Vnc extends BaseCommand<typeof Vnc> {
  static override summary = "Forward a local port to a lease's VNC server and print its password"
  static override description =
    "Listens on 127.0.0.1:<local port> and forwards each connection over the lease's SSH connection to the runner's VNC " +
    'on 127.0.0.1:5900 (it listens nowhere else). Prints the address and the per-lease password for a native VNC viewer; ' +
    'runs until Ctrl-C. Static hosts run their own VNC server: pass --host-managed.'
  static override examples = ['<%= config.bin %> vnc --id blue-crab', '<%= config.bin %> vnc --id blue-crab --local-port 5910 --open']
  static override flags = {
    ...desktopTargetFlags,
    'local-port': Flags.integer({ description: 'Local port to listen on (0 picks a free one)', default: 5901, min: 0, max: 65535 }),
    open: Flags.boolean({ description: 'Open vnc://localhost:<port> in the system VNC viewer', default: false }),
    'host-managed': Flags.boolean({ description: 'Static host: its operator runs VNC on 127.0.0.1:5900', default: false }),
  }

  async run(): Promise<{ leaseId: string; localPort: number; url: string }> {
    const { flags } = await this.parse(Vnc)
    const { startVnc } = await import('../services/desktop/vnc.js')
    const session = await startVnc(await this.context(flags), {
      ...flags,
      localPort: flags['local-port'],
      hostManaged: flags['host-managed'],
    })
    if (this.jsonEnabled())
      process.stdout.write(
        `${JSON.stringify({ leaseId: session.leaseId, localPort: session.localPort, url: session.url, password: session.password })}\n`,
      )
    else {
      this.log(`vnc: localhost:${session.localPort} (${session.url})`)
      this.log(`password: ${session.password}`)
      this.log(`ssh tunnel: ${session.sshCommand}`)
      this.log('forwarding until Ctrl-C')
    }
    await session.done
    return { leaseId: session.leaseId, localPort: session.localPort, url: session.url }
  }
}
