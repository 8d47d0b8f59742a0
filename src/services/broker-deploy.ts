import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CrabboxError } from '../errors.js'
import type { Progress } from '../ui/progress.js'
import { assertSettings, enabledProviders } from './broker-settings.js'
import { brokerSources, locateWrangler, runWrangler, scratchConfig, type Wrangler, type WranglerResult } from './wrangler.js'

export interface BrokerTarget {
  /** The Worker's name (default: wrangler.toml's). */
  name?: string
  /** Cloudflare account ID (default: wrangler's own choice: CLOUDFLARE_ACCOUNT_ID, or the login's only account). */
  accountId?: string
  env: NodeJS.ProcessEnv
}

export interface BrokerDeployOptions extends BrokerTarget {
  dryRun: boolean
  settings: Record<string, string>
  progress: Progress
  /** How long to wait for /v1/health after the script is up. */
  healthTimeoutMs?: number
}

export interface BrokerDeployResult {
  name: string
  url: string
  dryRun: boolean
  providers: string[]
  /** Names only: values are never printed. */
  secrets: string[]
  bundle?: { files: { path: string; bytes: number }[] }
  loginCommand: string
}

/** The packaged worker's wrangler.toml, read for its Worker name. */
async function defaultName(config: string): Promise<string> {
  const match = /^name\s*=\s*"([^"]+)"/m.exec(await readFile(config, 'utf8'))
  return match?.[1] ?? 'crabbox-coordinator'
}

export interface WranglerSession {
  wrangler: Wrangler
  name: string
  /** A scratch folder: wrangler's own `.wrangler/` lands here, never in the installed package. */
  cwd: string
  config: string
  env: NodeJS.ProcessEnv
  run(args: string[], input?: string): Promise<WranglerResult>
  close(): Promise<void>
}

/**
 * wrangler pointed at the packaged Worker, from a scratch folder with a copy of wrangler.toml
 * whose `main` is the package's worker/index.ts (so the package folder is only read).
 */
export async function wranglerSession(target: BrokerTarget): Promise<WranglerSession> {
  const { root, config } = brokerSources()
  const wrangler = locateWrangler(target.env, root)
  const name = target.name ?? (await defaultName(config))
  const cwd = await mkdtemp(join(tmpdir(), 'crabbox-broker-deploy-'))
  const copy = await scratchConfig(config, root, cwd)
  const env: NodeJS.ProcessEnv = { ...target.env, WRANGLER_SEND_METRICS: 'false', FORCE_COLOR: '0', CI: target.env.CI ?? 'true' }
  if (target.accountId) env.CLOUDFLARE_ACCOUNT_ID = target.accountId
  delete env.CLOUDFLARE_INCLUDE_PROCESS_ENV
  return {
    wrangler,
    name,
    cwd,
    config: copy,
    env,
    run: (args, input) => runWrangler(wrangler, [...args, '--config', copy], { cwd, env, input }),
    close: () => rm(cwd, { recursive: true, force: true }),
  }
}

/** wrangler's own last lines, for an error message (never holds secret values: they travel on stdin only). */
const tail = (result: WranglerResult) =>
  `${result.stdout}\n${result.stderr}`
    .split('\n')
    .filter((line) => line.trim())
    .slice(-15)
    .join('\n')

async function assertCloudflareLogin(session: WranglerSession): Promise<void> {
  if (session.env.CLOUDFLARE_API_TOKEN?.trim()) return
  const whoami = await session.run(['whoami', '--json'])
  if (whoami.code === 0) return
  throw new CrabboxError('no Cloudflare login: set CLOUDFLARE_API_TOKEN or run `wrangler login`', {
    exit: 'auth',
    code: 'cloudflare_login',
    hint: 'Create an API token in the Cloudflare dashboard (My Profile → API Tokens, template "Edit Cloudflare Workers") and export CLOUDFLARE_API_TOKEN, or run `wrangler login` once on this machine. Nothing was deployed.',
  })
}

async function waitForHealth(url: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${url}/v1/health`, { signal: AbortSignal.timeout(5000) })
      if (response.ok) return true
      await response.body?.cancel()
    } catch {}
    await new Promise((r) => setTimeout(r, 1000))
  }
  return false
}

async function dryRun(session: WranglerSession): Promise<BrokerDeployResult['bundle']> {
  const outdir = join(session.cwd, 'bundle')
  const built = await session.run(['deploy', '--dry-run', '--outdir', outdir, '--name', session.name])
  if (built.code !== 0) throw new CrabboxError(`wrangler could not build the broker bundle (exit ${built.code})\n${tail(built)}`)
  const files = []
  for (const path of (await readdir(outdir, { recursive: true })).map(String).sort()) {
    const info = await stat(join(outdir, path))
    if (info.isFile()) files.push({ path, bytes: info.size })
  }
  return { files }
}

/**
 * `broker deploy`: checks the settings (and the Cloudflare login), then secrets → script →
 * health, in that order. A failing step stops the rest and says what was done and how to undo
 * it. `--dry-run` builds the bundle with `wrangler deploy --dry-run` (offline) and changes nothing.
 */
export async function deployBroker(options: BrokerDeployOptions): Promise<BrokerDeployResult> {
  const { settings, progress } = options
  assertSettings(settings)
  const url = settings.CRABBOX_PUBLIC_URL.trim().replace(/\/+$/, '')
  const session = await wranglerSession(options)
  const secrets = Object.keys(settings).sort()
  const result: BrokerDeployResult = {
    name: session.name,
    url,
    dryRun: options.dryRun,
    providers: enabledProviders(settings),
    secrets,
    loginCommand: `crabbox login --url ${url}`,
  }
  try {
    if (options.dryRun) {
      progress.phase('building the broker bundle (wrangler deploy --dry-run)')
      result.bundle = await dryRun(session)
      progress.done('built the broker bundle')
      return result
    }
    await assertCloudflareLogin(session)
    const name = session.name
    progress.phase(`setting ${secrets.length} secrets on ${name}`)
    const put = await session.run(['secret', 'bulk', '--name', name], JSON.stringify(settings))
    if (put.code !== 0)
      throw new CrabboxError(`setting the secrets failed (wrangler exit ${put.code}); nothing was deployed\n${tail(put)}`, {
        hint: `Some secrets may be set already: see them with \`crabbox broker secrets list --name ${name}\`, remove one with \`crabbox broker secrets unset KEY --name ${name}\`. Fix the cause, then run broker deploy again.`,
      })
    progress.done(`set ${secrets.length} secrets on ${name}`)
    progress.phase(`deploying the Worker ${name} and its Durable Object migrations`)
    const deployed = await session.run(['deploy', '--name', name])
    if (deployed.code !== 0)
      throw new CrabboxError(
        `wrangler deploy failed (exit ${deployed.code}); the secrets were set, the script was not deployed\n${tail(deployed)}`,
        {
          hint: `Run broker deploy again once the cause is fixed (secrets are overwritten). To undo: \`wrangler delete --name ${name}\` removes the Worker and its secrets (and its Durable Object data, if it was deployed before).`,
        },
      )
    progress.done(`deployed ${name}`)
    progress.phase(`waiting for ${url}/v1/health`)
    if (!(await waitForHealth(url, options.healthTimeoutMs ?? 120_000)))
      throw new CrabboxError(`the broker was deployed, but ${url}/v1/health did not answer`, {
        exit: 'provisioning',
        hint: `Check that CRABBOX_PUBLIC_URL routes to the Worker ${name} (a workers.dev address or a custom domain route), then \`curl ${url}/v1/health\`. To undo: \`wrangler delete --name ${name}\`.`,
      })
    progress.done('the broker answers')
    return result
  } catch (error) {
    progress.fail()
    throw error
  } finally {
    await session.close()
  }
}
