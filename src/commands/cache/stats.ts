import { BaseCommand } from '../../base-command.js'
import { idFlag, reclaimFlag } from '../../flags.js'
import type { CacheStats } from '../../services/cache/index.js'
import { formatBytes } from '../../ui/format.js'

export default class CacheStatsCommand extends BaseCommand<typeof CacheStatsCommand> {
  static override summary = "Show the size of the lease's package caches (pnpm, npm, git, docker)"
  static override description =
    'Sizes of /var/cache/crabbox/{pnpm,npm,git} and `docker system df`, for the kinds enabled in cache.* (docs/commands/cache.md).'
  static override examples = ['<%= config.bin %> cache stats --id blue-crab', '<%= config.bin %> cache list --id blue-crab --json']
  static override flags = { id: idFlag, reclaim: reclaimFlag }

  async run(): Promise<CacheStats> {
    const { flags } = await this.parse(this.ctor as typeof CacheStatsCommand)
    const { cacheStats } = await import('../../services/cache/index.js')
    const stats = await cacheStats(await this.context(flags), flags)
    if (!this.jsonEnabled()) {
      for (const entry of stats.caches)
        this.log(
          `${entry.kind.padEnd(7)}${entry.bytes === undefined ? 'absent' : formatBytes(entry.bytes)}${entry.detail ? `  ${entry.detail}` : ''}  ${entry.path}`,
        )
      this.log(`total  ${formatBytes(stats.totalBytes)} of ${stats.maxGB} GB (cache.maxGB)`)
    }
    return stats
  }
}
