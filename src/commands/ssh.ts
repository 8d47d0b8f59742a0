import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { leaseFlags, reclaimFlag } from '../flags.js'
import type { SshResult } from '../services/ssh.js'

export default class Ssh extends BaseCommand<typeof Ssh> {
  static override summary = 'Open a shell on a lease, run one command there, or print the ssh command line'
  static override description =
    'Connects with ssh2 through the per-user connection agent, so a warm box costs one round trip. ' +
    'Everything after `--` is the remote command; its exit code is passed through. Without a command you get an interactive shell with a pty; ' +
    'when stdout is not a terminal (and stdin carries no script) the OpenSSH command line is printed instead, for scripts.'
  static override examples = [
    '<%= config.bin %> ssh blue-crab',
    '<%= config.bin %> ssh --id cbx_abcdef123456',
    '<%= config.bin %> ssh --id blue-crab -- uname -a',
    '<%= config.bin %> ssh --provider ssh --static-host build1.example.com -- make test',
    '<%= config.bin %> ssh --id blue-crab --print',
  ]
  static override usage = ['<%= command.id %> [LEASE] [FLAGS] [-- <command…>]']
  static override strict = false // argv after `--` is the remote command
  static override args = { lease: Args.string({ description: 'Lease ID or slug (or use --id)', ignoreStdin: true }) }
  static override flags = {
    id: Flags.string({ summary: 'Lease ID or slug' }),
    provider: Flags.string({ summary: 'Provider (ssh for an existing host)' }),
    'static-host': Flags.string({ summary: 'Existing SSH host (provider ssh)' }),
    'static-user': Flags.string({ summary: 'User on the static host' }),
    'static-port': Flags.string({ summary: 'SSH port of the static host' }),
    network: leaseFlags.network,
    reclaim: reclaimFlag,
    print: Flags.boolean({ summary: 'Print an equivalent OpenSSH command line instead of connecting' }),
    'show-secret': Flags.boolean({ summary: "With --print: include a delegated provider's SSH token (Daytona) instead of leaving it out" }),
    tty: Flags.boolean({ char: 't', summary: 'Without a command: a pty shell even when stdin is not a terminal (like ssh -t)' }),
  }

  async run(): Promise<SshResult> {
    const { flags, argv } = await this.parse(Ssh)
    // Words after `--` are the remote command (from the raw argv: the parser may reorder them);
    // without --id or a static host, the first word before it names the lease, as on stop and status.
    const dashDash = this.argv.indexOf('--')
    const afterDash = dashDash >= 0 ? this.argv.slice(dashDash + 1) : []
    const before = (argv as string[]).slice(0, (argv as string[]).length - afterDash.length)
    const id = flags.id ?? (flags['static-host'] || flags.provider ? undefined : before.shift())
    const { sshCommand } = await import('../services/ssh.js')
    const result = await sshCommand(await this.context(flags), { ...flags, id, showSecret: flags['show-secret'] }, [
      ...before,
      ...afterDash,
    ])
    if (result.openssh && !this.jsonEnabled()) this.log(result.openssh)
    return result
  }
}
