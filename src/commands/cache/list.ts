import CacheStatsCommand from './stats.js'

/** `cache list` is `cache stats` under its other name. */
export default class CacheList extends CacheStatsCommand {
  static override summary = "Show the size of the lease's package caches (same as cache stats)"
  static override examples = ['<%= config.bin %> cache list --id blue-crab']
}
