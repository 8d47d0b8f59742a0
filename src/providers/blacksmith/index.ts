import { spawn } from 'node:child_process'
import { rename, rm } from 'node:fs/promises'
import { CrabboxError } from '../../errors.js'
import { leaseKeyDir } from '../../paths.js'
import { defaultSlug } from '../../protocol/ids.js'
import { pickByIdOrSlug } from '../pick.js'
import type { AcquireRequest, DelegatedRunRequest, DirectProvider, Lease, ProviderContext } from '../types.js'
import { TESTBOX_ID, commandString, listArgs, parseTestboxId, parseTestboxList, runArgs, stopArgs, warmupArgs } from './args.js'
import { undialledSsh } from '../undialled.js'

export const BLACKSMITH = 'blacksmith-testbox'

/** How long the `blacksmith` CLI gets to pass Ctrl-C on to the remote command before it is killed. */
const INTERRUPT_GRACE_MS = 10_000

interface Ran {
  code: number
  output: string
}

const missingCli = () =>
  new CrabboxError('the blacksmith CLI was not found on PATH', {
    exit: 'auth',
    code: 'missing_cli',
    hint: 'install the Blacksmith CLI, then run `blacksmith auth login`',
  })

/** Runs `blacksmith <args>` with its output captured; a missing executable is exit 3 naming the login command. */
function blacksmith(args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn('blacksmith', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    const take = (chunk: Buffer) => (output += chunk.toString('utf8'))
    child.stdout.on('data', take)
    child.stderr.on('data', take)
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' ? missingCli() : error))
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), output }))
  })
}

const lastLine = (output: string) =>
  output
    .trim()
    .split('\n')
    .filter((line) => line.trim())
    .at(-1) ?? ''

function failed(what: string, ran: Ran, exit: 'provisioning' | 'error' = 'error'): CrabboxError {
  const said = lastLine(ran.output)
  const auth = /not (logged|authenticated)|unauthori[sz]ed|auth login/i.test(ran.output)
  return new CrabboxError(`blacksmith ${what} failed (exit ${ran.code})${said ? `: ${said}` : ''}`, {
    exit: auth ? 'auth' : exit,
    hint: auth ? 'run `blacksmith auth login`' : undefined,
  })
}

/** Blacksmith's words for a testbox that is over; any other status is a live (`active`) lease. */
const ENDED = new Set(['stopped', 'stopping', 'expired', 'failed', 'terminated', 'completed', 'cancelled'])

function testboxLease(id: string, keep: boolean, status: string, details: Record<string, unknown> = {}): Lease {
  const dir = leaseKeyDir(id)
  return {
    id,
    slug: defaultSlug(id),
    provider: BLACKSMITH,
    // Blacksmith owns the machine and the connection: crabbox never dials it itself.
    ssh: undialledSsh(dir),
    workRoot: '',
    state: ENDED.has(status.toLowerCase()) ? status.toLowerCase() : 'active',
    keep,
    details: { delegated: true, status, ...details },
  }
}

async function stop(id: string, context: ProviderContext): Promise<void> {
  const ran = await blacksmith(stopArgs(context.config, id))
  // Stopping what is already gone is fine: release is idempotent.
  if (ran.code !== 0 && !/not found|already stopped|no such testbox/i.test(ran.output)) throw failed(`testbox stop --id ${id}`, ran)
}

/**
 * Warms a testbox up; the key crabbox made for the lease moves to the testbox's ID. A warmup that
 * fails after printing a testbox ID (or whose key cannot be moved) stops that testbox before failing.
 */
async function acquire(request: AcquireRequest, context: ProviderContext): Promise<Lease> {
  const args = warmupArgs(context.config, request.publicKey)
  context.progress.phase('blacksmith testbox warmup')
  const ran = await blacksmith(args)
  for (const line of ran.output.split('\n')) if (line.trim()) context.progress.detail(line)
  const id = parseTestboxId(ran.output)
  const cleanUp = async () => {
    if (id) await stop(id, context).catch((error: Error) => context.progress.warn(`could not stop ${id}: ${error.message}`))
  }
  if (ran.code !== 0) {
    context.progress.fail()
    await cleanUp()
    throw failed('testbox warmup', ran, 'provisioning')
  }
  if (!id) throw new CrabboxError('blacksmith testbox warmup did not print a tbx_ ID', { exit: 'provisioning' })
  try {
    await rename(leaseKeyDir(request.leaseId), leaseKeyDir(id))
  } catch (error) {
    await cleanUp()
    throw new CrabboxError(`could not keep the key of ${id}: ${(error as Error).message}`, { cause: error })
  }
  context.progress.done(`warmed up ${id}`)
  return testboxLease(id, request.keep, 'ready')
}

async function list(context: ProviderContext): Promise<Lease[]> {
  const ran = await blacksmith(listArgs(context.config))
  if (ran.code !== 0) throw failed('testbox list', ran)
  return parseTestboxList(ran.output).map((row) => testboxLease(row.id, true, row.status, { row }))
}

async function resolve(idOrSlug: string, context: ProviderContext): Promise<Lease> {
  const leases = await list(context)
  const found = leases.find((lease) => lease.id === idOrSlug)
  if (found) return found
  // A testbox ID names itself even when `list` (this org's running testboxes) does not show it.
  if (TESTBOX_ID.exec(idOrSlug)?.[0] === idOrSlug) return testboxLease(idOrSlug, true, 'unknown')
  return pickByIdOrSlug(leases, idOrSlug, BLACKSMITH)
}

/**
 * `testbox run`: Blacksmith syncs the checkout and runs the command, its output straight to ours.
 * Ctrl-C is passed to the CLI (which stops the remote command); it is killed if it outlives the grace.
 */
function runDelegated(request: DelegatedRunRequest, context: ProviderContext): Promise<number> {
  const { lease, signal } = request
  const args = runArgs(context.config, lease.id, lease.ssh.privateKeyPath, commandString(request.argv, request.shell), request.debug)
  return new Promise((resolve, reject) => {
    const child = spawn('blacksmith', args, { stdio: ['ignore', request.stdoutToStderr ? 2 : 'inherit', 'inherit'] })
    let killer: NodeJS.Timeout | undefined
    const interrupt = () => {
      child.kill('SIGINT')
      killer = setTimeout(() => child.kill('SIGKILL'), INTERRUPT_GRACE_MS)
      killer.unref()
    }
    if (signal.aborted) interrupt()
    else signal.addEventListener('abort', interrupt, { once: true })
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' ? missingCli() : error))
    child.on('close', (code, killedBy) => {
      clearTimeout(killer)
      signal.removeEventListener('abort', interrupt)
      resolve(code ?? (killedBy === 'SIGINT' ? 130 : 1))
    })
  })
}

/** `blacksmith-testbox` (alias `blacksmith`): Blacksmith Testboxes driven through the `blacksmith` CLI. */
export const blacksmithProvider: DirectProvider = {
  name: BLACKSMITH,
  readiness: 'managed',
  delegated: { sync: 'delegated', runDelegated },
  acquire,
  resolve,
  async release(lease, context) {
    await stop(lease.id, context)
    // The key crabbox made for the testbox goes with it.
    if (TESTBOX_ID.exec(lease.id)?.[0] === lease.id) await rm(leaseKeyDir(lease.id), { recursive: true, force: true })
  },
  list,
}
