import Cleanup from '../cleanup.js'

/** `machine cleanup` is `cleanup` under the name the machine commands use. */
export default class MachineCleanup extends Cleanup {
  static override summary = 'Delete expired direct-mode cloud machines (same as cleanup)'
  static override examples = ['<%= config.bin %> machine cleanup --provider hetzner --dry-run']
}
