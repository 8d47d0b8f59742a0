import { rm } from 'node:fs/promises'
import { basename } from 'node:path'
import { AuthenticationError, CommandExitError, Sandbox, type SandboxOpts } from 'e2b'
import { CrabboxError } from '../../errors.js'
import { leaseKeyDir } from '../../paths.js'
import { defaultSlug } from '../../protocol/ids.js'
import { pickByIdOrSlug } from '../pick.js'
import type { AcquireRequest, CheckoutArchive, DelegatedRunRequest, DirectProvider, Lease, ProviderContext } from '../types.js'
import { commandString } from '../blacksmith/args.js'
import { undialledSsh } from '../undialled.js'

export const E2B = 'e2b'
export const API_KEY_VARIABLE = 'E2B_API_KEY'
/** The archive's name inside the work folder while it is unpacked. */
const UPLOAD_NAME = '.crabbox-upload.tar.gz'
const COMMAND_TIMEOUT_MS = 7 * 24 * 3_600_000

type Opts = Pick<SandboxOpts, 'apiKey' | 'domain' | 'apiUrl' | 'sandboxUrl'>

/** The SDK's connection options from `e2b.*` and `E2B_API_KEY`; a missing key is exit 3 naming the variable. */
function connection(context: ProviderContext): Opts {
  const apiKey = process.env[API_KEY_VARIABLE]
  if (!apiKey)
    throw new CrabboxError(`${API_KEY_VARIABLE} is not set`, {
      exit: 'auth',
      code: 'missing_credentials',
      hint: `export ${API_KEY_VARIABLE}`,
    })
  const { domain, apiUrl, sandboxUrl } = context.config.e2b
  return { apiKey, domain, apiUrl, sandboxUrl }
}

/** An SDK error as a crabbox error carrying E2B's own message (bad key → exit 3). */
function apiError(what: string, error: unknown, exit: 'provisioning' | 'error' = 'error'): CrabboxError {
  if (error instanceof CrabboxError) return error
  const message = error instanceof Error ? error.message : String(error)
  const auth = error instanceof AuthenticationError
  return new CrabboxError(`e2b ${what} failed: ${message}`, {
    exit: auth ? 'auth' : exit,
    hint: auth ? `check ${API_KEY_VARIABLE}` : undefined,
    cause: error,
  })
}

interface SandboxRow {
  sandboxId: string
  metadata: Record<string, string>
  state?: string
  endAt?: Date
}

function sandboxLease(row: SandboxRow, keep: boolean, workdir: string): Lease {
  const id = row.metadata.crabbox_lease ?? row.sandboxId
  const dir = leaseKeyDir(id)
  return {
    id,
    slug: row.metadata.crabbox_slug ?? defaultSlug(id),
    provider: E2B,
    // E2B owns the sandbox and the connection: crabbox never dials it over SSH.
    ssh: undialledSsh(dir),
    workRoot: workdir,
    state: row.state === 'paused' ? 'paused' : 'active',
    keep,
    expiresAt: row.endAt && !Number.isNaN(row.endAt.getTime()) ? row.endAt.toISOString() : undefined,
    details: { delegated: true, sandboxId: row.sandboxId, repo: row.metadata.crabbox_repo },
  }
}

/** The work folder for a lease: `<e2b.workdir>/<repo>`. */
const workFolder = (context: ProviderContext, repo: string | undefined) =>
  `${context.config.e2b.workdir.replace(/\/+$/, '')}/${(repo ?? 'repo').replace(/[^A-Za-z0-9._-]/g, '_')}`

async function kill(sandboxId: string, context: ProviderContext): Promise<void> {
  try {
    // `false` means E2B no longer knows it: release is idempotent.
    await Sandbox.kill(sandboxId, connection(context))
  } catch (error) {
    throw apiError(`kill ${sandboxId}`, error)
  }
}

/** Creates a sandbox with crabbox's metadata and a timeout from the lease TTL. */
async function acquire(request: AcquireRequest, context: ProviderContext): Promise<Lease> {
  const opts = connection(context)
  const slug = defaultSlug(request.leaseId)
  const repo = basename(process.cwd()) || 'repo'
  const metadata = { crabbox: '1', crabbox_lease: request.leaseId, crabbox_slug: slug, crabbox_repo: repo }
  context.progress.phase(`e2b sandbox create (${context.config.e2b.template})`)
  let sandbox: Sandbox
  try {
    sandbox = await Sandbox.create(context.config.e2b.template, { ...opts, metadata, timeoutMs: request.ttlSeconds * 1000 })
  } catch (error) {
    context.progress.fail()
    throw apiError('sandbox create', error, 'provisioning')
  }
  context.progress.done(`created ${sandbox.sandboxId}`)
  return sandboxLease({ sandboxId: sandbox.sandboxId, metadata }, request.keep, workFolder(context, repo))
}

async function list(context: ProviderContext): Promise<Lease[]> {
  const opts = connection(context)
  const leases: Lease[] = []
  try {
    const pages = Sandbox.list({ ...opts, query: { metadata: { crabbox: '1' } } })
    while (pages.hasNext) {
      for (const row of await pages.nextItems()) leases.push(sandboxLease(row, true, workFolder(context, row.metadata.crabbox_repo)))
    }
  } catch (error) {
    throw apiError('sandbox list', error)
  }
  return leases
}

async function resolve(idOrSlug: string, context: ProviderContext): Promise<Lease> {
  const leases = await list(context)
  const found = leases.find((lease) => lease.id === idOrSlug || lease.details.sandboxId === idOrSlug)
  return found ?? pickByIdOrSlug(leases, idOrSlug, E2B)
}

const collect = async (stream: NodeJS.ReadableStream) => {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)
  return Buffer.concat(chunks)
}

/** Uploads the checkout archive into the work folder and unpacks it there. */
async function upload(sandbox: Sandbox, folder: string, checkout: CheckoutArchive, context: ProviderContext) {
  context.progress.phase(`e2b upload ${checkout.files} files → ${folder}`)
  const { stream, done } = checkout.open()
  const data = await collect(stream)
  await done
  await sandbox.files.write(`${folder}/${UPLOAD_NAME}`, new Blob([new Uint8Array(data)]))
  await sandbox.commands.run(`tar -xzf ${UPLOAD_NAME} && rm -f ${UPLOAD_NAME}`, { cwd: folder })
  context.progress.done(`uploaded ${data.length} bytes`)
}

/**
 * Uploads the checkout, then runs the command in the work folder with its output streamed and its
 * exit code passed through. Ctrl-C kills the remote process and the run resolves 130.
 */
async function runDelegated(request: DelegatedRunRequest, context: ProviderContext): Promise<number> {
  const { lease, signal } = request
  const sandboxId = String(lease.details.sandboxId ?? lease.id)
  const folder = lease.workRoot || workFolder(context, lease.details.repo as string | undefined)
  try {
    const sandbox = await Sandbox.connect(sandboxId, connection(context))
    if (request.checkout) await upload(sandbox, folder, request.checkout, context)
    const out = request.stdoutToStderr ? process.stderr : process.stdout
    const handle = await sandbox.commands.run(commandString(request.argv, request.shell), {
      background: true,
      cwd: folder,
      // The sandbox's own timeout (the lease TTL) bounds the command; this only has to outlast it.
      timeoutMs: COMMAND_TIMEOUT_MS,
      onStdout: (data) => void out.write(data),
      onStderr: (data) => void process.stderr.write(data),
    })
    const interrupt = () => void handle.kill().catch(() => undefined)
    if (signal.aborted) interrupt()
    else signal.addEventListener('abort', interrupt, { once: true })
    try {
      return (await handle.wait()).exitCode
    } catch (error) {
      if (error instanceof CommandExitError) return signal.aborted ? 130 : error.exitCode
      if (signal.aborted) return 130
      throw error
    } finally {
      signal.removeEventListener('abort', interrupt)
    }
  } catch (error) {
    throw apiError(`run on ${sandboxId}`, error)
  }
}

/** `e2b`: E2B sandboxes driven through the official SDK (delegated: crabbox uploads the checkout archive). */
export const e2bProvider: DirectProvider = {
  name: E2B,
  readiness: 'managed',
  delegated: { sync: 'archive', runDelegated },
  acquire,
  resolve,
  async release(lease, context) {
    await kill(String(lease.details.sandboxId ?? lease.id), context)
    await rm(leaseKeyDir(lease.id), { recursive: true, force: true })
  },
  list,
}
