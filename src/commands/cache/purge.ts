import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { idFlag, reclaimFlag } from '../../flags.js'

export default class CachePurge extends BaseCommand<typeof CachePurge> {
  static override summary = "Delete the lease's package caches"
  static override description =
    'Empties /var/cache/crabbox/<kind> (docker: `docker system prune -af`). A kind disabled in cache.* is refused.'
  static override examples = ['<%= config.bin %> cache purge --id blue-crab --kind npm --force']
  static override flags = {
    id: idFlag,
    kind: Flags.string({ description: 'Which cache', options: ['pnpm', 'npm', 'docker', 'git', 'all'], default: 'all' }),
    force: Flags.boolean({ description: 'Really delete (required)', default: false }),
    reclaim: reclaimFlag,
  }

  async run(): Promise<{ leaseId: string; purged: string[] }> {
    const { flags } = await this.parse(CachePurge)
    const { cachePurge } = await import('../../services/cache/index.js')
    const result = await cachePurge(await this.context(flags), flags)
    if (!this.jsonEnabled())
      this.log(result.purged.length ? `purged ${result.purged.join(', ')} on ${result.leaseId}` : `nothing to purge on ${result.leaseId}`)
    return result
  }
}
