import { readFile } from 'node:fs/promises'
import { parseEnv } from 'node:util'
import { CrabboxError, usageError } from '../errors.js'
import { brokerVars } from './broker-dev.js'

/**
 * The settings a deployed broker gets as Worker secrets: every CRABBOX_* broker setting of the
 * environment (as `broker dev` passes them), then the `--env-file` (KEY=VALUE lines), then the
 * same lines from stdin (`--env-stdin`) on top. Provider tokens without the CRABBOX_ prefix
 * (HETZNER_TOKEN, AWS_…) count only from those: an operator's own cloud login in their shell
 * never reaches the Worker by accident.
 */
export async function brokerSettings(
  sources: { file?: string; stdin?: () => Promise<string> },
  env: NodeJS.ProcessEnv,
): Promise<Record<string, string>> {
  const settings = brokerVars(env)
  const add = (text: string) => {
    for (const [key, value] of Object.entries(parseEnv(text))) if (value) settings[key] = value
  }
  if (sources.file !== undefined) {
    try {
      add(await readFile(sources.file, 'utf8'))
    } catch (error) {
      throw usageError(
        `cannot read --env-file ${sources.file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        'Give a readable file of KEY=VALUE lines (or pipe them in with --env-stdin).',
      )
    }
  }
  if (sources.stdin) add(await sources.stdin())
  return settings
}

const present = (settings: Record<string, string>, ...names: string[]) => names.some((name) => settings[name]?.trim())

/** The providers this broker will serve: the default one, and every one with settings. */
export function enabledProviders(settings: Record<string, string>): string[] {
  const enabled = new Set<string>()
  enabled.add(settings.CRABBOX_DEFAULT_PROVIDER?.trim() || (settings.CRABBOX_STATIC_POOL ? 'static' : 'hetzner'))
  if (settings.CRABBOX_STATIC_POOL) enabled.add('static')
  const keys = Object.keys(settings)
  if (keys.some((key) => /^(CRABBOX_HETZNER_|HETZNER_TOKEN$|HCLOUD_TOKEN$)/.test(key))) enabled.add('hetzner')
  if (keys.some((key) => /^(CRABBOX_AWS_|AWS_ACCESS_KEY_ID$|AWS_SECRET_ACCESS_KEY$)/.test(key))) enabled.add('aws')
  return [...enabled].sort()
}

function staticPoolProblem(pool: string | undefined): string | undefined {
  if (!pool) return 'the static provider needs CRABBOX_STATIC_POOL (a JSON array of SSH hosts)'
  try {
    const hosts: unknown = JSON.parse(pool)
    return Array.isArray(hosts) && hosts.length > 0 ? undefined : 'CRABBOX_STATIC_POOL must be a non-empty JSON array'
  } catch {
    return 'CRABBOX_STATIC_POOL is not valid JSON'
  }
}

/** What stops these settings from making a usable broker; empty when none. */
export function settingsProblems(settings: Record<string, string>): string[] {
  const problems: string[] = []
  const url = settings.CRABBOX_PUBLIC_URL?.trim()
  if (!url) problems.push('CRABBOX_PUBLIC_URL is not set (the https:// address users reach the broker at; login links use it)')
  else {
    let parsed: URL | undefined
    try {
      parsed = new URL(url)
    } catch {}
    const loopback = parsed && ['127.0.0.1', 'localhost', '[::1]'].includes(parsed.hostname)
    if (!parsed || !(parsed.protocol === 'https:' || (parsed.protocol === 'http:' && loopback)))
      problems.push(`CRABBOX_PUBLIC_URL=${url} is not an https:// URL`)
  }
  if (!present(settings, 'CRABBOX_SHARED_TOKEN', 'CRABBOX_ADMIN_TOKEN', 'CRABBOX_GITHUB_CLIENT_ID'))
    problems.push('nobody could log in: set CRABBOX_GITHUB_CLIENT_ID (GitHub login), CRABBOX_SHARED_TOKEN or CRABBOX_ADMIN_TOKEN')
  if (present(settings, 'CRABBOX_GITHUB_CLIENT_ID')) {
    for (const name of ['CRABBOX_GITHUB_CLIENT_SECRET', 'CRABBOX_SESSION_SECRET'])
      if (!present(settings, name)) problems.push(`GitHub login needs ${name}`)
  }
  for (const provider of enabledProviders(settings)) {
    if (provider === 'hetzner' && !present(settings, 'CRABBOX_HETZNER_TOKEN', 'HETZNER_TOKEN', 'HCLOUD_TOKEN'))
      problems.push('the hetzner provider needs CRABBOX_HETZNER_TOKEN (or HETZNER_TOKEN)')
    if (provider === 'aws') {
      if (!present(settings, 'CRABBOX_AWS_ACCESS_KEY_ID', 'AWS_ACCESS_KEY_ID'))
        problems.push('the aws provider needs CRABBOX_AWS_ACCESS_KEY_ID')
      if (!present(settings, 'CRABBOX_AWS_SECRET_ACCESS_KEY', 'AWS_SECRET_ACCESS_KEY'))
        problems.push('the aws provider needs CRABBOX_AWS_SECRET_ACCESS_KEY')
    }
    if (provider === 'static') {
      const problem = staticPoolProblem(settings.CRABBOX_STATIC_POOL)
      if (problem) problems.push(problem)
    }
    if (!['hetzner', 'aws', 'static'].includes(provider))
      problems.push(`CRABBOX_DEFAULT_PROVIDER=${provider} is not one of hetzner, aws, static`)
  }
  return problems
}

export function assertSettings(settings: Record<string, string>): void {
  const problems = settingsProblems(settings)
  if (problems.length === 0) return
  throw new CrabboxError(`the broker settings are not ready to deploy:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`, {
    exit: 'auth',
    code: 'broker_settings',
    hint: 'Add the missing settings to the --env-file (KEY=VALUE lines) or the environment, then run broker deploy again. docs/broker.md lists them.',
  })
}
