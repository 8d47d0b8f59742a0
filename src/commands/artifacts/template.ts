import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { usageError } from '../../errors.js'
import type { TemplateKind, TemplateResult } from '../../services/artifacts/template.js'

export default class ArtifactsTemplate extends BaseCommand<typeof ArtifactsTemplate> {
  static override summary = 'Write a Markdown report: before/after media, the test summary, links'
  static override description =
    'The summary is --summary text, or --summary-file: a run record (run.json from artifacts collect --run), ' +
    'a results summary (results --json), JUnit XML, or Markdown. Prints the Markdown unless --output is given. ' +
    'With a broker configured, the run links to its portal page.'
  static override examples = [
    '<%= config.bin %> artifacts template --before before.png --after screen.gif --summary-file evidence/run.json --output report.md',
    '<%= config.bin %> artifacts template mantis --before bug.gif --after fixed.gif --summary "Fixed the overflow"',
  ]
  static override args = { kind: Args.string({ description: 'Template: openclaw (QA summary) or mantis (bug report)' }) }
  static override flags = {
    kind: Flags.string({ description: 'Template: openclaw (QA summary, default) or mantis (bug report)', options: ['openclaw', 'mantis'] }),
    before: Flags.string({ description: 'Media from before the change (image inline, video as a link)' }),
    after: Flags.string({ description: 'Media from after the change' }),
    summary: Flags.string({ description: 'Summary text (Markdown)' }),
    'summary-file': Flags.string({ description: 'Run record, results JSON, JUnit XML or Markdown file' }),
    output: Flags.string({ char: 'o', description: 'Write the Markdown here instead of stdout' }),
  }

  async run(): Promise<TemplateResult> {
    const { args, flags } = await this.parse(ArtifactsTemplate)
    if (args.kind && flags.kind && args.kind !== flags.kind)
      throw usageError(`two template kinds named: ${args.kind} and --kind ${flags.kind}`, 'Give the kind once.')
    const { artifactsTemplate } = await import('../../services/artifacts/template.js')
    const result = await artifactsTemplate({
      kind: (args.kind ?? flags.kind ?? 'openclaw') as TemplateKind,
      before: flags.before,
      after: flags.after,
      summary: flags.summary,
      summaryFile: flags['summary-file'],
      output: flags.output,
      broker: (await this.context()).config.broker.url,
    })
    if (!this.jsonEnabled()) {
      if (result.output) this.log(result.output)
      else process.stdout.write(result.markdown)
    }
    return result
  }
}
