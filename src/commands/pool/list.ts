import List from '../list.js'

/** `pool list` is `list` under the name the pool commands use. */
export default class PoolList extends List {
  static override summary = 'List active leases (same as list)'
  static override examples = ['<%= config.bin %> pool list', '<%= config.bin %> pool list --json']
}
