import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { cleanupMachines, type CleanupResult } from '../services/cleanup.js'
import { renderCleanup } from '../ui/cleanup.js'

export default class Cleanup extends BaseCommand<typeof Cleanup> {
  static override summary = 'Delete expired direct-mode cloud machines (Hetzner, AWS)'
  static override description =
    'Lists machines labelled crabbox=true and deletes only those whose labels prove they are expired crabbox leases: never keep=true, never a running machine within 30 minutes of its expiry. Refuses to run when a broker is configured, because the broker owns expiry.'
  static override examples = ['<%= config.bin %> cleanup --provider hetzner --dry-run', '<%= config.bin %> cleanup --provider aws --json']
  static override flags = {
    provider: Flags.string({ description: 'Cloud provider to clean: hetzner, aws or azure (default: the configured provider)' }),
    'dry-run': Flags.boolean({ description: 'Show what would be deleted; delete nothing', default: false }),
  }

  async run(): Promise<CleanupResult> {
    const { provider, 'dry-run': dryRun } = this.flags
    const result = await cleanupMachines(await this.context({ provider }), { dryRun })
    if (!this.jsonEnabled()) process.stdout.write(renderCleanup(result))
    return result
  }
}
