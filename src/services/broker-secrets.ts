import { CrabboxError, usageError } from '../errors.js'
import { wranglerSession, type BrokerTarget } from './broker-deploy.js'

/** All of stdin as text (secrets and env files arrive this way, never in argv). */
export async function readAllStdin(stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  let text = ''
  for await (const chunk of stdin) text += chunk.toString()
  return text
}

const secretName = (key: string) => {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key))
    throw usageError(`${JSON.stringify(key)} is not a secret name`, 'Use letters, digits and _, e.g. CRABBOX_SHARED_TOKEN.')
  return key
}

async function wranglerStep(
  target: BrokerTarget,
  what: string,
  args: (name: string) => string[],
  input?: string,
): Promise<{ name: string; stdout: string }> {
  const session = await wranglerSession(target)
  try {
    const result = await session.run(args(session.name), input)
    if (result.code !== 0) {
      const output = `${result.stdout}\n${result.stderr}`.trim().split('\n').slice(-10).join('\n')
      throw new CrabboxError(`${what} failed (wrangler exit ${result.code})\n${output}`, {
        hint: 'Check the Cloudflare login (CLOUDFLARE_API_TOKEN or `wrangler login`) and the Worker name (--name).',
      })
    }
    return { name: session.name, stdout: result.stdout }
  } finally {
    await session.close()
  }
}

/** The names of the deployed Worker's secrets (values are never readable back). */
export async function listSecrets(target: BrokerTarget): Promise<{ name: string; secrets: string[] }> {
  const { name, stdout } = await wranglerStep(target, 'listing the secrets', (worker) => [
    'secret',
    'list',
    '--name',
    worker,
    '--format',
    'json',
  ])
  let parsed: unknown
  try {
    parsed = JSON.parse(stdout.slice(stdout.indexOf('[')))
  } catch {
    throw new CrabboxError(`wrangler secret list printed no JSON list:\n${stdout.slice(0, 500)}`)
  }
  const secrets = (Array.isArray(parsed) ? parsed : []).map((entry: { name?: unknown }) => String(entry?.name)).sort()
  return { name, secrets }
}

/** Sets one secret; its value comes from stdin (one line, the trailing newline dropped). */
export async function setSecret(target: BrokerTarget, key: string, value: string): Promise<{ name: string; key: string }> {
  secretName(key)
  const trimmed = value.replace(/\r?\n$/, '')
  if (!trimmed) throw usageError(`no value for ${key} on stdin`, `Pipe it in: printf '%s\\n' "$VALUE" | crabbox broker secrets set ${key}`)
  const { name } = await wranglerStep(target, `setting ${key}`, (worker) => ['secret', 'put', key, '--name', worker], trimmed)
  return { name, key }
}

export async function unsetSecret(target: BrokerTarget, key: string): Promise<{ name: string; key: string }> {
  secretName(key)
  const { name } = await wranglerStep(target, `removing ${key}`, (worker) => ['secret', 'delete', key, '--name', worker])
  return { name, key }
}
