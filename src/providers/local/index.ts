import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CrabboxError } from '../../errors.js'
import { pidRuns } from '../../pids.js'
import { allocateSlug } from '../../protocol/ids.js'
import type { AcquireRequest, DirectProvider, Lease, ProviderContext } from '../types.js'
import { generateEd25519Pair } from '../../transport/ssh/keys.js'
import { pickByIdOrSlug } from '../pick.js'
import { LocalLeaseRecord, localLeaseDir, localRoot, readLocalJson } from './files.js'

const serverMain = join(dirname(fileURLToPath(import.meta.url)), 'server-main.js')
const host = '127.0.0.1'

/** The lease's server still runs (a pid reused by another program does not count). */
const alive = (pid: number, leaseId: string) => pidRuns(pid, leaseId)

function toLease(record: LocalLeaseRecord): Lease {
  return {
    id: record.id,
    slug: record.slug,
    provider: 'local',
    ssh: {
      host,
      port: record.port,
      fallbackPorts: [],
      user: record.user,
      privateKeyPath: record.privateKeyPath,
      knownHostsPath: record.knownHostsPath,
    },
    workRoot: record.workRoot,
    serverType: 'local',
    state: 'active',
    keep: record.keep,
    expiresAt: record.expiresAt,
    idleTimeoutSeconds: record.idleTimeoutSeconds,
    details: { pid: record.pid, dir: localLeaseDir(record.id) },
  }
}

/** Live local leases; directories of runners that already exited are swept as we go. */
function liveRecords(): LocalLeaseRecord[] {
  const root = localRoot()
  if (!existsSync(root)) return []
  const records: LocalLeaseRecord[] = []
  for (const name of readdirSync(root)) {
    const dir = join(root, name)
    const record = readLocalJson(join(dir, 'lease.json'), LocalLeaseRecord)
    if (record && alive(record.pid, record.id)) records.push(record)
    else if (!existsSync(join(dir, 'server.json')) || record) rmSync(dir, { recursive: true, force: true })
  }
  return records
}

/** The runner log's last lines (its error, when it failed to start), or '' when there is none. */
function lastLogLines(path: string, count = 5): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-count).join('\n')
  } catch {
    return ''
  }
}

/** Starts the detached runner and waits for its `listening <port>` line. */
function startRunner(dir: string, timeoutMs = 15_000): Promise<{ pid: number; port: number }> {
  const log = openSync(join(dir, 'server.log'), 'a')
  // The runner gets no CLI secrets: only what a login session would have.
  const env: Record<string, string> = {}
  for (const key of ['HOME', 'PATH', 'SHELL', 'LANG', 'TMPDIR', 'USER']) if (process.env[key]) env[key] = process.env[key]!
  const child = spawn(process.execPath, [serverMain, dir], { detached: true, stdio: ['ignore', 'pipe', log], env })
  closeSync(log)
  return new Promise((resolve, reject) => {
    let buffered = ''
    const fail = (message: string) => {
      clearTimeout(timer)
      child.kill('SIGKILL')
      // The lease folder (and its log) goes away with the failed lease: say what the runner said.
      const said = lastLogLines(join(dir, 'server.log'))
      reject(
        new CrabboxError(`local runner did not start: ${message}${said ? `\n${said}` : ''}`, {
          exit: 'provisioning',
          hint: `see ${join(dir, 'server.log')}`,
        }),
      )
    }
    const timer = setTimeout(() => fail('timed out'), timeoutMs)
    child.on('error', (error) => fail(error.message))
    child.on('exit', (code) => fail(`exited ${code}`))
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk
      const match = /^listening (\d+)\n/.exec(buffered)
      if (!match) return
      clearTimeout(timer)
      child.removeAllListeners('exit')
      child.stdout!.destroy()
      child.unref()
      resolve({ pid: child.pid!, port: Number(match[1]) })
    })
  })
}

async function waitGone(pid: number, leaseId: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!alive(pid, leaseId)) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return !alive(pid, leaseId)
}

/**
 * The embedded default: a throwaway workspace under the state dir, served by a
 * loopback SSH server that runs commands as the current user on this machine.
 */
export const localProvider: DirectProvider = {
  name: 'local',
  readiness: 'static',

  async acquire(request: AcquireRequest, context: ProviderContext): Promise<Lease> {
    // Slug first: listing sweeps directories that have no runner yet.
    const slug = allocateSlug(
      request.leaseId,
      liveRecords().map((r) => r.slug),
    )
    const dir = localLeaseDir(request.leaseId)
    const workRoot = join(dir, 'work')
    mkdirSync(workRoot, { recursive: true, mode: 0o700 })
    // ssh2 costs ~50 ms to load: only a new lease needs it here (generateEd25519Pair loads it).
    const hostKey = await generateEd25519Pair()
    writeFileSync(join(dir, 'host_key'), hostKey.private, { mode: 0o600 })
    writeFileSync(
      join(dir, 'server.json'),
      JSON.stringify({
        authorizedKey: request.publicKey,
        workRoot,
        idleMs: request.idleTimeoutSeconds * 1000,
        ttlMs: request.ttlSeconds * 1000,
      }),
      { mode: 0o600 },
    )
    // One short line, so it never wraps; the workspace path goes to logs only.
    context.progress.info(`local provider: commands run on this machine as ${userInfo().username}, without isolation`)
    context.progress.detail(`local workspace ${workRoot}`)
    let runner: { pid: number; port: number }
    try {
      runner = await startRunner(dir)
    } catch (error) {
      rmSync(dir, { recursive: true, force: true })
      throw error
    }
    // Pin the runner's host key: the lease's known_hosts holds exactly this key.
    mkdirSync(dirname(request.knownHostsPath), { recursive: true, mode: 0o700 })
    const publicKey = hostKey.public.split(' ').slice(0, 2).join(' ')
    writeFileSync(request.knownHostsPath, `[${host}]:${runner.port} ${publicKey}\n`, { mode: 0o600 })
    const now = Date.now()
    const record: LocalLeaseRecord = {
      id: request.leaseId,
      slug,
      pid: runner.pid,
      port: runner.port,
      user: userInfo().username,
      keep: request.keep,
      workRoot,
      privateKeyPath: request.privateKeyPath,
      knownHostsPath: request.knownHostsPath,
      idleTimeoutSeconds: request.idleTimeoutSeconds,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + request.ttlSeconds * 1000).toISOString(),
    }
    writeFileSync(join(dir, 'lease.json'), JSON.stringify(record, null, 2), { mode: 0o600 })
    return toLease(record)
  },

  async resolve(idOrSlug: string): Promise<Lease> {
    return toLease(pickByIdOrSlug(liveRecords(), idOrSlug, 'local'))
  },

  async release(lease: Lease): Promise<void> {
    const dir = localLeaseDir(lease.id)
    const record = readLocalJson(join(dir, 'lease.json'), LocalLeaseRecord)
    const pid = record?.pid ?? (typeof lease.details.pid === 'number' ? lease.details.pid : undefined)
    if (pid !== undefined && alive(pid, lease.id)) {
      process.kill(pid, 'SIGTERM')
      if (!(await waitGone(pid, lease.id, 3000))) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // exited in between
        }
        await waitGone(pid, lease.id, 2000)
      }
    }
    rmSync(dir, { recursive: true, force: true })
  },

  async list(): Promise<Lease[]> {
    return liveRecords().map(toLease)
  },
}
