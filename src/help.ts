import { Help } from '@oclif/core'

/** Root help groups, in workflow order; anything not named here (plugins, autocomplete, a user plugin) goes under MORE. */
const groups: ReadonlyArray<readonly [title: string, names: readonly string[]]> = [
  ['EVERYDAY', ['run', 'warmup', 'ssh', 'stop', 'list', 'status', 'attach', 'logs', 'history', 'results', 'heartbeat']],
  ['DESKTOP', ['desktop', 'screenshot', 'vnc', 'code']],
  [
    'BROKER',
    [
      'broker',
      'login',
      'logout',
      'whoami',
      'share',
      'unshare',
      'usage',
      'admin',
      'pool',
      'machine',
      'cleanup',
      'events',
      'inspect',
      'release',
    ],
  ],
  ['SETUP', ['init', 'doctor', 'config', 'agent', 'sync-plan', 'version']],
]

const examples = [
  ['crabbox run -- npm test', 'lease a box, sync this checkout, run, release'],
  ['crabbox warmup && crabbox run --id <slug> -- npm test', 'keep a box warm between runs'],
  ['crabbox config set ssh.key ~/.ssh/id_ed25519', 'change one setting'],
  ['crabbox broker dev', 'a local broker to try the broker workflow'],
] as const

/**
 * crabbox's root help: commands grouped by workflow instead of one alphabetical list, with
 * examples and where the docs are. Help for one command or topic is oclif's own.
 */
export default class CrabboxHelp extends Help {
  protected override async showRootHelp(): Promise<void> {
    this.log(this.formatRoot())
    this.log('')
    const entries = new Map<string, string>()
    for (const topic of this.sortedTopics) if (!topic.name.includes(':')) entries.set(topic.name, topic.description?.split('\n')[0] ?? '')
    for (const command of this.sortedCommands) if (!command.id.includes(':')) entries.set(command.id, this.summary(command) ?? '')
    const listed = new Set<string>()
    const section = (title: string, names: readonly string[]) => {
      const rows = names.filter((name) => entries.has(name)).map((name) => [name, entries.get(name)!.split('\n')[0]])
      for (const [name] of rows) listed.add(name)
      if (rows.length > 0)
        this.log(`${this.section(title, this.renderList(rows, { indentation: 2, spacer: '\n', stripAnsi: this.opts.stripAnsi }))}\n`)
    }
    for (const [title, names] of groups) section(title, names)
    section(
      'MORE',
      [...entries.keys()].filter((name) => !listed.has(name)),
    )
    const width = Math.max(...examples.map(([command]) => command.length)) + 2
    this.log(this.section('EXAMPLES', examples.map(([command, what]) => `$ ${command.padEnd(width)}# ${what}`).join('\n')))
    this.log('')
    this.log(this.section('DOCS', 'crabbox help <command> for its flags and examples; docs/cli.md and docs/commands/ in the repository.'))
    this.log('')
  }
}
