import { BaseCommand } from '../../base-command.js'
import { idFlag, reclaimFlag } from '../../flags.js'
import type { WarmResult } from '../../services/cache/index.js'

export default class CacheWarm extends BaseCommand<typeof CacheWarm> {
  static override summary = 'Run a command on the lease to fill its package caches (no run is recorded)'
  static override description =
    'Runs the command in the lease workdir (the Actions workspace and environment when the lease is hydrated) with npm and pnpm pointed at ' +
    '/var/cache/crabbox, then removes the oldest cache files while the caches are over cache.maxGB. No sync, no run record.'
  static override examples = ['<%= config.bin %> cache warm --id blue-crab -- pnpm install --frozen-lockfile']
  static override strict = false // argv after `--` is the remote command
  static override flags = { id: idFlag, reclaim: reclaimFlag }

  async run(): Promise<WarmResult> {
    const { flags, argv } = await this.parse(CacheWarm)
    const dashDash = this.argv.indexOf('--')
    const command = dashDash >= 0 ? this.argv.slice(dashDash + 1) : (argv as string[])
    const { cacheWarm } = await import('../../services/cache/index.js')
    return cacheWarm(await this.context(flags), flags, command)
  }
}
