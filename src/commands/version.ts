import { BaseCommand } from '../base-command.js'

export default class Version extends BaseCommand<typeof Version> {
  static override summary = 'Print the crabbox version'
  static override examples = ['<%= config.bin %> version', '<%= config.bin %> version --json']

  async run(): Promise<{ version: string }> {
    const version = this.config.version
    if (!this.jsonEnabled()) this.log(version)
    return { version }
  }
}
