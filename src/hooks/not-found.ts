import { color } from '../ui/colors.js'
import { closest } from '../ui/suggest.js'

interface NotFoundOptions {
  id: string
  config: { commandIDs: string[]; topics: Array<{ name: string }>; bin: string }
}

/**
 * oclif's `command_not_found` hook: an unknown command is a usage error (exit 2) that names the
 * words as typed (`config shwo`, never oclif's internal `config:shwo`) and suggests the closest
 * command. It prints itself and tells oclif's handler to print nothing more.
 */
export default async function notFound(options: NotFoundOptions): Promise<never> {
  const { id, config } = options
  const words = id.split(':')
  const topics = new Set(config.topics.map((topic) => topic.name))
  const inTopic = words.length > 1 && topics.has(words[0])
  const typed = inTopic ? words.slice(0, 2) : words.slice(0, 1)
  const prefix = inTopic ? `${words[0]}:` : ''
  const candidates = [...config.commandIDs, ...topics].filter(
    (candidate) => candidate.startsWith(prefix) && !candidate.slice(prefix.length).includes(':'),
  )
  let guess = closest(typed.join(':'), candidates)
  // `confg show` → `config show`: a mistyped topic keeps the subcommand when that exists.
  if (guess && !inTopic && topics.has(guess) && words[1] && config.commandIDs.includes(`${guess}:${words[1]}`))
    guess = `${guess}:${words[1]}`
  const shown = typed.join(' ')
  process.stderr.write(`${color.red('error:')} command ${shown} not found\n`)
  const hint = guess ? `Did you mean ${config.bin} ${guess.replaceAll(':', ' ')}? ` : ''
  process.stderr.write(`${color.dim(`${hint}Run ${config.bin} help for the command list.`)}\n`)
  throw Object.assign(new Error(`command ${shown} not found`), { skipOclifErrorHandling: true, oclif: { exit: 2 } })
}
