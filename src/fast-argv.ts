import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

/**
 * The argv of the hot commands, `crabbox ssh --id X -- <cmd>` and `crabbox run --id X [--no-sync] -- <cmd>`,
 * read by a small table (src/fast-path.ts explains which path a command takes). It imports
 * only Node modules, so the thin client (src/thin-client.ts) can use it without loading the fast path.
 */

type FlagKind = 'string' | 'boolean'

/** Flags each hot command takes on this path; a config flag is passed to the config loader by this name, as oclif would. */
const COMMAND_FLAGS: Record<FastCommand['command'], Record<string, FlagKind>> = {
  ssh: { id: 'string', provider: 'string', 'static-host': 'string', 'static-user': 'string', 'static-port': 'string' },
  run: { id: 'string', 'no-sync': 'boolean', shell: 'boolean', 'timing-json': 'boolean' },
}
const GLOBAL_FLAGS: Record<string, FlagKind> = { debug: 'boolean', quiet: 'boolean' }
const SHORT: Record<string, string> = { '-q': 'quiet' }
/** Flags that are config (config/load.ts flagPaths), handed to the config loader. */
export const CONFIG_FLAGS = new Set(['provider', 'static-host', 'static-user', 'static-port'])

export interface FastCommand {
  command: 'ssh' | 'run'
  flags: Record<string, string | boolean>
  /** ssh: the lease named by the one word before `--` (no --id, --provider or --static-host). */
  lease?: string
  /** The remote command: the words after `--`, never empty. */
  words: string[]
}

export const truthy = (value: string | undefined) => ['1', 'true', 'yes'].includes((value ?? '').toLowerCase())

/** Whether oclif would load a user plugin (`crabbox plugins install`), which could change any command. */
function userPlugins(env: NodeJS.ProcessEnv): boolean {
  const dataDir = env.CRABBOX_DATA_DIR || join(env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share'), 'crabbox')
  return existsSync(join(dataDir, 'package.json'))
}

/** The hot command `argv` (`process.argv.slice(2)`) asks for, or undefined: run the full CLI. */
export function fastCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): FastCommand | undefined {
  const command = argv[0]
  if (command !== 'ssh' && command !== 'run') return undefined
  if (truthy(env.CRABBOX_NO_FAST_PATH) || env.CRABBOX_CONTENT_TYPE?.toLowerCase() === 'json') return undefined
  const dashDash = argv.indexOf('--')
  const words = dashDash >= 0 ? argv.slice(dashDash + 1) : []
  if (words.length === 0) return undefined
  const known = { ...COMMAND_FLAGS[command], ...GLOBAL_FLAGS }
  const flags: Record<string, string | boolean> = {}
  const positional: string[] = []
  const before = argv.slice(1, dashDash)
  for (let i = 0; i < before.length; i++) {
    const word = before[i]
    if (!word.startsWith('-')) {
      positional.push(word)
      continue
    }
    const eq = word.indexOf('=')
    const name = SHORT[word] ?? (word.startsWith('--') ? word.slice(2, eq >= 0 ? eq : undefined) : '')
    const kind = known[name]
    if (!kind || name in flags) return undefined
    if (kind === 'boolean') {
      if (eq >= 0) return undefined
      flags[name] = true
      continue
    }
    const value = eq >= 0 ? word.slice(eq + 1) : before[++i]
    if (value === undefined || value === '' || value.startsWith('-')) return undefined
    flags[name] = value
  }
  if (userPlugins(env)) return undefined
  if (command === 'run') return flags.id && positional.length === 0 ? { command, flags, words } : undefined
  // ssh: a lease word only stands alone; with --id (or a static host) oclif makes it part of the command.
  if (positional.length > 1 || (positional.length === 1 && (flags.id || flags.provider || flags['static-host']))) return undefined
  return { command, flags, lease: positional[0], words }
}
