import type { Config } from '../config/schema.js'
import { parseDuration } from '../config/schema.js'
import { setDefaultAgentIdleTimeout } from '../transport/ssh/settings.js'
import type { Progress } from '../ui/progress.js'

/** Everything a service needs from its caller: the loaded config and where to report. */
export interface ServiceContext {
  config: Config
  progress: Progress
  json: boolean
  cwd: string
  /** Git top-level of cwd (cwd outside git), as the config loader found it. */
  repoRoot?: string
  /** Config files that were read, lowest precedence first. */
  configFiles?: string[]
}

/** The context for one invocation; hands the transport the config values it needs. */
export function serviceContext(context: ServiceContext): ServiceContext {
  try {
    setDefaultAgentIdleTimeout(parseDuration(context.config.agent.idleTimeout))
  } catch {
    // A bad value keeps the default; the agent is only a cache.
  }
  return context
}
