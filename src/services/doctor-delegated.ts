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

/** `islo`: an API key in the environment (the base URL it will talk to is shown). */
export function checkIslo(config: Config, env: NodeJS.ProcessEnv): DoctorCheck {
  const name = `provider ${config.provider}`
  const variable = ['CRABBOX_ISLO_API_KEY', 'ISLO_API_KEY'].find((key) => env[key]?.trim())
  if (!variable) return fail(name, 'no Islo API key in the environment', 'Set CRABBOX_ISLO_API_KEY (or ISLO_API_KEY).')
  return pass(name, `${config.islo.baseUrl}, key from ${variable}, image ${config.islo.image}`)
}

/** `e2b`: the API key variable is set (the SDK reads nothing else from this machine). */
export function checkE2b(config: Config, env: NodeJS.ProcessEnv): DoctorCheck {
  const name = `provider ${config.provider}`
  if (!env.E2B_API_KEY) return fail(name, 'E2B_API_KEY is not set', 'Export E2B_API_KEY (an E2B API key).')
  const where = config.e2b.apiUrl ?? `api.${config.e2b.domain ?? 'e2b.app'}`
  return pass(name, `E2B_API_KEY set, template ${config.e2b.template}, API ${where}`)
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
