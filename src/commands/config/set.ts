import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { setConfigValue, type ConfigValueResult } from '../../services/config.js'

export default class ConfigSet extends BaseCommand<typeof ConfigSet> {
  static override summary = 'Set one config key in the user config (or the repo file with --repo)'
  static override description =
    'KEY is a dotted config key (docs/config.md), checked against the config schema; VALUE is read as YAML (numbers, true/false, [a, b]) or as text. The user file is written 0600 in a 0700 folder; other keys and comments are kept. --repo writes .crabbox.yaml at the git root instead (never tokens).'
  static override examples = [
    '<%= config.bin %> config set ssh.key ~/.ssh/id_ed25519',
    '<%= config.bin %> config set class fast --repo',
    "<%= config.bin %> config set sync.exclude '[dist, coverage]' --repo",
  ]
  static override args = {
    key: Args.string({ description: 'Dotted config key, e.g. ssh.key', required: true }),
    value: Args.string({ description: 'The value', required: true }),
  }
  static override flags = { repo: Flags.boolean({ summary: 'Write .crabbox.yaml at the git root instead of the user config' }) }

  async run(): Promise<ConfigValueResult> {
    const { args, flags } = await this.parse(ConfigSet)
    const result = await setConfigValue(args.key, args.value, { repo: flags.repo, cwd: process.cwd() })
    if (!this.jsonEnabled()) this.log(`${result.key} = ${JSON.stringify(result.value)}  (${result.file})`)
    return result
  }
}
