import { join } from 'node:path'
import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { stateDir } from '../../paths.js'
import { runBrokerDev, type BrokerDevResult } from '../../services/broker-dev.js'

export default class BrokerDev extends BaseCommand<typeof BrokerDev> {
  static override summary = 'Run the broker locally under wrangler dev (workerd) until interrupted'
  static override description =
    'Every CRABBOX_* broker setting in the environment (CRABBOX_SHARED_TOKEN, CRABBOX_ADMIN_TOKEN, CRABBOX_STATIC_POOL, ...) is passed to the Worker. ' +
    'Prints "broker ready url=..." on stderr once /v1/health answers; wrangler output is shown only with --debug or on failure.'
  static override examples = [
    '<%= config.bin %> broker dev',
    'CRABBOX_SHARED_TOKEN=dev-token <%= config.bin %> broker dev --port 8788 --state ./broker-state',
  ]
  static override flags = {
    port: Flags.integer({ description: 'Port to listen on (127.0.0.1)', default: 8787, min: 1, max: 65535 }),
    state: Flags.string({ description: 'Directory for the Durable Object state [default: <state dir>/broker]' }),
  }

  async run(): Promise<BrokerDevResult> {
    const { port, state, debug } = this.flags
    return runBrokerDev({ port, stateDir: state ?? join(stateDir(), 'broker'), debug, progress: this.progress })
  }
}
