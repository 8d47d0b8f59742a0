import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { DEFAULT_INIT_PATHS, initRepo, type InitResult } from '../services/init.js'

export default class Init extends BaseCommand<typeof Init> {
  static override summary = 'Set up crabbox in this repository'
  static override description =
    'Writes .crabbox.yaml, an agent skill (.agents/skills/crabbox/SKILL.md) and a GitHub Actions workflow that runs the tests through crabbox (.github/workflows/crabbox.yml) at the git root. --config, --skill and --workflow write them elsewhere in the repository. Refuses to overwrite any of them (exit 2, nothing written) unless --force is given.'
  static override examples = [
    '<%= config.bin %> init',
    '<%= config.bin %> init --force',
    '<%= config.bin %> init --workflow .github/workflows/remote-tests.yml',
  ]
  static override flags = {
    force: Flags.boolean({ summary: 'Overwrite existing files' }),
    config: Flags.string({
      summary: 'Where the repo config goes, relative to the git root',
      default: DEFAULT_INIT_PATHS.config,
      helpValue: 'PATH',
    }),
    workflow: Flags.string({
      summary: 'Where the GitHub Actions workflow goes, relative to the git root',
      default: DEFAULT_INIT_PATHS.workflow,
      helpValue: 'PATH',
    }),
    skill: Flags.string({
      summary: 'Where the agent skill goes, relative to the git root',
      default: DEFAULT_INIT_PATHS.skill,
      helpValue: 'PATH',
    }),
  }

  async run(): Promise<InitResult> {
    const { flags } = await this.parse(Init)
    const context = await this.context()
    const result = await initRepo({
      repoRoot: context.repoRoot ?? context.cwd,
      force: flags.force,
      paths: { config: flags.config, workflow: flags.workflow, skill: flags.skill },
    })
    if (!this.jsonEnabled()) for (const path of result.written) this.log(`wrote ${path}`)
    return result
  }
}
