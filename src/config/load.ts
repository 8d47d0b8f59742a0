import { type Config, defaultConfig } from './schema.js'

export interface LoadConfigOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Flag values already parsed by the command; they win over everything. */
  flags?: Partial<Record<string, unknown>>
  warn?: (message: string) => void
}

export interface LoadedConfig {
  config: Config
  /** Files that were read, lowest precedence first. */
  files: string[]
}

/**
 * Placeholder loader: defaults only. Replaced by the full precedence chain
 * (flags > CRABBOX_* env > repo file > user file > defaults).
 */
export async function loadConfig(_options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  return { config: defaultConfig(), files: [] }
}
