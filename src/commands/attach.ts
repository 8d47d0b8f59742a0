import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { parseDuration } from '../config/schema.js'
import { RemoteExit } from '../errors.js'
import { durationFlag, runIdFlag, runIdOf } from '../flags.js'
import { attachRun, type AttachResult } from '../services/attach.js'

export default class Attach extends BaseCommand<typeof Attach> {
  static override summary = "Follow a run's output live, from another terminal or machine; exits with the run's exit code"
  static override description =
    'Run stdout goes to stdout and run stderr to stderr, byte for byte; other events are short `[crabbox]` lines on stderr. ' +
    'Events arrive over the control WebSocket, or by HTTP polling when the broker has none; a dropped connection resumes after the last printed event.'
  static override examples = ['<%= config.bin %> attach run_0123456789ab', '<%= config.bin %> attach run_0123456789ab --after 40 --poll 2s']
  static override args = { run: Args.string({ description: 'Run ID (run_…), or use --id' }) }
  static override flags = {
    id: runIdFlag,
    after: Flags.integer({ description: 'Start after this event sequence number', default: 0, min: 0 }),
    poll: durationFlag({
      description: 'HTTP polling interval when the control socket is unavailable, and how often a quiet socket is checked',
      default: '1s',
    }),
  }

  async run(): Promise<AttachResult> {
    const { args, flags } = await this.parse(Attach)
    const pollMs = parseDuration(flags.poll)
    const debug = flags.debug ? (message: string) => void process.stderr.write(`[crabbox] ${message}\n`) : undefined
    const result = await attachRun(await this.context(), runIdOf(args.run, flags.id), {
      after: flags.after,
      pollMs: Math.max(50, pollMs),
      quiet: this.jsonEnabled(),
      debug,
    })
    if (result.exitCode !== 0) {
      // Under --json too: the result object first, then the run's exit code, as without --json.
      if (this.jsonEnabled()) this.logJson(result)
      throw new RemoteExit(result.exitCode)
    }
    return result
  }
}
