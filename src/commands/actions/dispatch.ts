import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import type { DispatchResult } from '../../services/actions/index.js'

export default class ActionsDispatch extends BaseCommand<typeof ActionsDispatch> {
  static override summary = 'Start a workflow_dispatch run of a repository workflow'
  static override description =
    'Sends the configured actions.fields, then each -f key=value (a later key wins), as the workflow inputs, and prints the run it started when GitHub lists it.'
  static override examples = ['<%= config.bin %> actions dispatch --repo acme/api --workflow crabbox.yml --ref main -f command="npm test"']
  static override flags = {
    repo: Flags.string({ description: 'GitHub repository owner/name (config actions.repo; default: the origin remote)' }),
    workflow: Flags.string({ description: 'Workflow file name or ID (config actions.workflow; default crabbox.yml)' }),
    ref: Flags.string({ description: 'Branch or tag to run (config actions.ref; default: the default branch)' }),
    field: Flags.string({ char: 'f', description: 'A workflow input key=value (repeatable)', multiple: true, helpValue: 'KEY=VALUE' }),
  }

  async run(): Promise<DispatchResult> {
    const { flags } = await this.parse(ActionsDispatch)
    const { dispatchWorkflow } = await import('../../services/actions/index.js')
    const result = await dispatchWorkflow(await this.context(flags), { ...flags, fields: flags.field })
    if (!this.jsonEnabled())
      this.log(`dispatched ${result.workflow} on ${result.repo}@${result.ref}${result.runUrl ? ` run=${result.runUrl}` : ''}`)
    return result
  }
}
