/**
 * The `local` provider's runner: a loopback SSH server for one lease, started
 * detached by the CLI (`node server-main.js <leaseDir>`). It authorizes only the
 * lease key, serves exec/shell channels with plain `sh -c` in the lease's
 * workspace, and exits (removing the workspace) on SIGTERM, at the lease TTL,
 * or after the idle timeout, so a dead CLI never leaks it.
 *
 * It prints `listening <port>` on stdout once bound, then never writes there again.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { timingSafeEqual } from 'node:crypto'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import ssh2 from 'ssh2'
import { LocalServerConfig, readLocalJson } from './files.js'

const { Server, utils } = ssh2

const leaseDir = process.argv[2]
if (!leaseDir) {
  process.stderr.write('usage: server-main <leaseDir>\n')
  process.exit(2)
}
const config = readLocalJson(join(leaseDir, 'server.json'), LocalServerConfig)
if (!config) {
  process.stderr.write(`no server.json in ${leaseDir}\n`)
  process.exit(2)
}

const allowed = utils.parseKey(config.authorizedKey)
if (allowed instanceof Error) throw allowed
const allowedBlob = allowed.getPublicSSH()
const hostKey = readFileSync(join(leaseDir, 'host_key'))

const children = new Set<ChildProcess>()
let active = 0
let idleTimer: NodeJS.Timeout | undefined

// A runner holds no secrets of the CLI that started it: only a plain login-like env.
const me = userInfo()
const baseEnv: Record<string, string> = {
  HOME: process.env.HOME || me.homedir,
  USER: me.username,
  LOGNAME: me.username,
  SHELL: process.env.SHELL || '/bin/sh',
  PATH: process.env.PATH || '/usr/local/bin:/usr/bin:/bin',
  LANG: process.env.LANG || 'C.UTF-8',
  ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
}

function armIdle(): void {
  if (idleTimer) clearTimeout(idleTimer)
  idleTimer = active > 0 ? undefined : setTimeout(() => shutdown('idle timeout'), config!.idleMs)
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}

/** Stops a command whose client went away: TERM, then KILL if it lingers. */
function stopChild(child: ChildProcess): void {
  killGroup(child, 'SIGTERM')
  setTimeout(() => killGroup(child, 'SIGKILL'), 2000).unref()
}

let shuttingDown = false
function shutdown(reason: string): void {
  if (shuttingDown) return
  shuttingDown = true
  for (const child of children) killGroup(child, 'SIGKILL')
  server.close()
  // The lease is over either way: leave nothing behind on disk.
  try {
    rmSync(leaseDir!, { recursive: true, force: true })
  } catch {
    // best effort; the CLI removes it too
  }
  process.stderr.write(`crabbox local runner exiting: ${reason}\n`)
  process.exit(0)
}

type Channel = ssh2.ServerChannel

/** Starts one command for a channel; returns how to signal it (its whole process group). */
function runCommand(channel: Channel, argv: string[], env: Record<string, string>): (name: string) => void {
  active++
  armIdle()
  const child = spawn(argv[0], argv.slice(1), {
    cwd: config!.workRoot,
    env: { ...baseEnv, ...env },
    detached: true, // own process group, so a signal reaches the whole command tree
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  children.add(child)
  child.stdout!.pipe(channel, { end: false })
  child.stderr!.pipe(channel.stderr, { end: false })
  channel.pipe(child.stdin!)
  child.stdin!.on('error', () => {}) // the command may exit without reading stdin
  let finished = false
  child.on('error', (error) => {
    if (finished) return
    finished = true
    children.delete(child)
    channel.stderr.write(`${error.message}\n`)
    channel.exit(127)
    channel.end()
    active--
    armIdle()
  })
  // `close` fires after the process exited and its stdout/stderr drained.
  child.on('close', (code, signal) => {
    if (finished) return
    finished = true
    children.delete(child)
    if (signal) channel.exit(signal.replace(/^SIG/, ''), false, '')
    else channel.exit(code ?? 255)
    channel.end()
    active--
    armIdle()
  })
  channel.on('close', () => {
    if (!finished) stopChild(child)
  })
  return (name) => killGroup(child, `SIG${name.replace(/^SIG/, '')}` as NodeJS.Signals)
}

/** Signal senders by ssh2 session object, set once its exec/shell started. */
const sessionSignals = new WeakMap<object, (name: string) => void>()

/**
 * ssh2's server drops every channel request that arrives after the client's EOF
 * (the session counts as "ending"), and a command's stdin is at EOF in the
 * usual case: Ctrl-C never reached it. Signal requests are taken from the
 * protocol before that check instead (ssh2 is pinned at 1.17.0).
 */
function deliverSignals(client: ssh2.Connection): void {
  type Handler = (self: unknown, recipient: number, type: string, wantReply: boolean, data: unknown) => void
  const raw = client as unknown as { _protocol: { _handlers: Record<string, Handler> }; _chanMgr: { get(id: number): unknown } }
  const original = raw._protocol._handlers.CHANNEL_REQUEST
  raw._protocol._handlers.CHANNEL_REQUEST = (self, recipient, type, wantReply, data) => {
    if (type !== 'signal' || typeof data !== 'string') return original(self, recipient, type, wantReply, data)
    const session = raw._chanMgr.get(recipient)
    if (typeof session === 'object' && session !== null) sessionSignals.get(session)?.(data)
  }
}

const server = new Server({ hostKeys: [hostKey] }, (client) => {
  client.on('error', () => {})
  deliverSignals(client)
  client.on('authentication', (ctx) => {
    if (ctx.method !== 'publickey' || ctx.key.algo !== allowed.type) return ctx.reject(['publickey'])
    const blob = ctx.key.data
    if (blob.length !== allowedBlob.length || !timingSafeEqual(blob, allowedBlob)) return ctx.reject(['publickey'])
    if (ctx.signature && ctx.blob && allowed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(['publickey'])
    ctx.accept()
  })
  client.on('ready', () => {
    client.on('session', (acceptSession) => {
      const session = acceptSession()
      const env: Record<string, string> = {}
      session.on('env', (accept, _reject, info) => {
        env[info.key] = info.val
        accept?.()
      })
      session.on('pty', (accept) => accept?.())
      session.on('window-change', (accept) => accept?.())
      session.on('exec', (accept, _reject, info) => {
        sessionSignals.set(session, runCommand(accept(), ['sh', '-c', info.command], env))
      })
      session.on('shell', (accept) => {
        sessionSignals.set(session, runCommand(accept(), [baseEnv.SHELL, '-i'], env))
      })
    })
  })
})

server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  process.stdout.write(`listening ${port}\n`)
  armIdle()
  setTimeout(() => shutdown('lease ttl reached'), config.ttlMs).unref()
})

process.on('SIGTERM', () => shutdown('released'))
process.on('SIGINT', () => shutdown('interrupted'))
process.on('SIGHUP', () => {}) // detached: the CLI's terminal going away is not our end
process.stdout.on('error', () => {}) // the CLI stops reading after the first line
