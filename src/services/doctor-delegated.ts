import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import type { Config } from '../config/schema.js'
import { CrabboxError } from '../errors.js'
import { daytonaCredentials } from '../providers/daytona/client.js'
import { fail, pass, type DoctorCheck } from './doctor-checks.js'

/** The first executable `name` on `PATH`, if any. */
export function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

/** `blacksmith-testbox`: the `blacksmith` CLI is installed and a workflow is configured (its login is the CLI's own). */
export function checkBlacksmith(config: Config, env: NodeJS.ProcessEnv): DoctorCheck {
  const name = `provider ${config.provider}`
  const cli = onPath('blacksmith', env)
  if (!cli) return fail(name, 'the blacksmith CLI is not on PATH', 'Install the Blacksmith CLI, then run `blacksmith auth login`.')
  if (!config.blacksmith.workflow)
    return fail(name, `${cli}, but no workflow configured`, 'Set blacksmith.workflow (or CRABBOX_BLACKSMITH_WORKFLOW).')
  const org = config.blacksmith.org ? ` org ${config.blacksmith.org}` : ''
  return pass(name, `${cli}, workflow ${config.blacksmith.workflow}${org} (login: \`blacksmith auth login\`)`)
}

/** `daytona`: credentials are in the environment (the API itself is not called). */
export function checkDaytona(config: Config, env: NodeJS.ProcessEnv): DoctorCheck {
  const name = `provider ${config.provider}`
  try {
    const auth = daytonaCredentials(env).apiKey ? 'API key' : 'JWT'
    return pass(name, `${config.daytona.apiUrl}, snapshot ${config.daytona.snapshot ?? '(Daytona default)'}, ${auth}`)
  } catch (error) {
    if (!(error instanceof CrabboxError)) throw error
    return fail(name, error.message, `${error.hint ?? 'Set DAYTONA_API_KEY'}.`)
  }
}
