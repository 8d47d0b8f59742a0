import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { Config } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import { defaultSlug } from '../../protocol/ids.js'
import { pickByIdOrSlug } from '../pick.js'
import type { AcquireRequest, DelegatedRunRequest, DirectProvider, Lease, ProviderContext } from '../types.js'
import { IsloClient, apiKey, type IsloSandbox } from './api.js'
import { undialledSsh } from '../undialled.js'

export const ISLO = 'islo'

/** Lease IDs are the sandbox name behind this prefix. */
const PREFIX = 'isb_'
/** Only sandboxes crabbox named are crabbox's. */
const NAME_PREFIX = 'crabbox-'
/** How long a new sandbox gets to reach `running`, and how often it is asked. */
const READY_TIMEOUT_MS = 5 * 60_000
const READY_POLL_MS = 1_000
/** How long a command gets to end after Ctrl-C was passed on before the stream is dropped. */
const INTERRUPT_GRACE_MS = 10_000

const READY = new Set(['running', 'ready', 'started'])
const FAILED = new Set(['failed', 'error', 'stopped', 'deleted', 'terminated'])

const client = (config: Config) => new IsloClient(config.islo.baseUrl, apiKey(process.env))

/** The checkout's folder name (the nearest folder up with `.git`, else the current one), as a name part. */
function repoName(cwd = process.cwd()): string {
  let dir = cwd
  while (!existsSync(join(dir, '.git')) && dirname(dir) !== dir) dir = dirname(dir)
  const name = basename(existsSync(join(dir, '.git')) ? dir : cwd)
  const part = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/, '')
  return part || 'repo'
}

/** `crabbox-<repo>-<6 hex>`. */
export const sandboxName = (repo = repoName()) => `${NAME_PREFIX}${repo}-${randomBytes(3).toString('hex')}`

/** The sandbox an `isb_…` lease ID names, if it is one. */
export const sandboxOf = (id: string) => (id.startsWith(PREFIX) && id.length > PREFIX.length ? id.slice(PREFIX.length) : undefined)

/** The workspace folder the checkout goes to and commands start in. */
export const workspacePath = (config: Config) => `/workspace/${config.islo.workdir.replace(/^\/+|\/+$/g, '') || 'crabbox'}`

function sandboxLease(sandbox: IsloSandbox, keep: boolean, config: Config): Lease {
  const id = `${PREFIX}${sandbox.name}`
  const status = (sandbox.status ?? 'unknown').toLowerCase()
  return {
    id,
    slug: defaultSlug(id),
    provider: ISLO,
    // Islo owns the machine and the connection: crabbox never dials it itself.
    ssh: undialledSsh(),
    workRoot: workspacePath(config),
    state: FAILED.has(status) ? status : 'active',
    keep,
    details: { delegated: true, sandbox: sandbox.name, status },
  }
}

async function waitRunning(api: IsloClient, name: string): Promise<IsloSandbox> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    const sandbox = await api.get(name)
    const status = (sandbox.status ?? '').toLowerCase()
    if (READY.has(status)) return sandbox
    if (FAILED.has(status)) throw new CrabboxError(`islo sandbox ${name} is ${status}`, { exit: 'provisioning' })
    if (Date.now() > deadline)
      throw new CrabboxError(`islo sandbox ${name} was not running after ${READY_TIMEOUT_MS / 60_000} minutes (${status})`, {
        exit: 'provisioning',
      })
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS))
  }
}

/** Creates the sandbox and waits for it; a failure after it exists deletes it before failing. */
async function acquire(request: AcquireRequest, context: ProviderContext): Promise<Lease> {
  const { config, progress } = context
  const api = client(config)
  const name = sandboxName()
  const { image, vcpus, memoryMB, diskGB, gatewayProfile, snapshotName } = config.islo
  progress.phase(`islo sandbox ${name}`)
  let created = false
  try {
    await api.create({
      name,
      image,
      vcpus,
      memory_mb: memoryMB,
      disk_gb: diskGB,
      ...(gatewayProfile && { gateway_profile: gatewayProfile }),
      ...(snapshotName && { snapshot_name: snapshotName }),
    })
    created = true
    const sandbox = await waitRunning(api, name)
    progress.done(`created ${PREFIX}${name}`)
    return sandboxLease(sandbox, request.keep, config)
  } catch (error) {
    progress.fail()
    if (created) await api.delete(name).catch((gone: Error) => progress.warn(`could not delete islo sandbox ${name}: ${gone.message}`))
    throw error
  }
}

async function list(context: ProviderContext): Promise<Lease[]> {
  const sandboxes = await client(context.config).list()
  return sandboxes.filter((sandbox) => sandbox.name.startsWith(NAME_PREFIX)).map((sandbox) => sandboxLease(sandbox, true, context.config))
}

async function resolve(idOrSlug: string, context: ProviderContext): Promise<Lease> {
  const name = sandboxOf(idOrSlug)
  if (name) return sandboxLease(await client(context.config).get(name), true, context.config)
  return pickByIdOrSlug(await list(context), idOrSlug, ISLO)
}

/** The command words for exec: `--shell` (or one word) runs through `sh -c`, otherwise the words as they are. */
export const execCommand = (argv: string[], shell: boolean) => (shell || argv.length === 1 ? ['sh', '-c', argv.join(' ')] : argv)

/** Uploads the checkout (when given), then runs the command with its output streamed; the exit event gives the code. */
async function runDelegated(request: DelegatedRunRequest, context: ProviderContext): Promise<number> {
  const { lease, checkout } = request
  const name = sandboxOf(lease.id) ?? String(lease.details.sandbox)
  const api = client(context.config)
  const workdir = workspacePath(context.config)
  if (checkout) {
    context.progress.phase(`uploading ${checkout.files} files to ${workdir}`)
    const { stream, done } = checkout.open()
    await Promise.all([api.upload(name, workdir, stream), done]).catch((error: unknown) => {
      context.progress.fail()
      // The packer may still be waiting for a reader: stop it.
      ;(stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.()
      throw error
    })
    context.progress.done(`uploaded ${checkout.files} files`)
  }
  // Ctrl-C before the command started: it never runs.
  if (request.signal.aborted) return 130
  return streamExec(api, name, execCommand(request.argv, request.shell), workdir, request)
}

async function streamExec(
  api: IsloClient,
  name: string,
  command: string[],
  workdir: string,
  request: DelegatedRunRequest,
): Promise<number> {
  const { signal } = request
  const out = request.stdoutToStderr ? process.stderr : process.stdout
  const stream = new AbortController()
  let execId: string | undefined
  let killer: NodeJS.Timeout | undefined
  const interrupt = () => {
    if (execId) void api.signal(name, execId, 'SIGINT').catch(() => undefined)
    killer = setTimeout(() => stream.abort(), INTERRUPT_GRACE_MS)
    killer.unref()
  }
  signal.addEventListener('abort', interrupt, { once: true })
  try {
    for await (const event of api.exec(name, command, workdir, stream.signal)) {
      const data = event.data ? (JSON.parse(event.data) as Record<string, unknown>) : {}
      if (event.event === 'started') {
        execId = String(data.exec_id ?? data.id ?? '')
        if (signal.aborted) void api.signal(name, execId, 'SIGINT').catch(() => undefined)
      } else if (event.event === 'stdout') out.write(String(data.data ?? ''))
      else if (event.event === 'stderr') process.stderr.write(String(data.data ?? ''))
      else if (event.event === 'exit') return Number(data.exit_code ?? data.code ?? 1)
      else if (event.event === 'error') throw new CrabboxError(`islo exec on ${name} failed: ${String(data.message ?? event.data)}`)
    }
  } catch (error) {
    if (!(stream.signal.aborted && signal.aborted)) throw error
  } finally {
    clearTimeout(killer)
    signal.removeEventListener('abort', interrupt)
  }
  // Ctrl-C and the command never said how it ended: the interrupt's own code stands.
  if (signal.aborted) return 130
  throw new CrabboxError(`islo exec stream on ${name} ended without an exit event: the command's result is unknown`, {
    code: 'no_exit_event',
  })
}

/** `islo`: Islo sandboxes over their HTTP API; crabbox uploads the checkout as an archive and streams exec. */
export const isloProvider: DirectProvider = {
  name: ISLO,
  readiness: 'managed',
  delegated: { sync: 'archive', runDelegated },
  acquire,
  resolve,
  async release(lease, context) {
    const name = sandboxOf(lease.id)
    if (name) await client(context.config).delete(name)
  },
  list,
}
