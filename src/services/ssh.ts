import { fstatSync } from 'node:fs'
import type { ServiceContext } from './context.js'
import { parseDuration } from '../config/schema.js'
import { CrabboxError, RemoteExit } from '../errors.js'
import type { ReadyKind } from '../transport/ssh/readiness.js'
import type { ExecResult, SshTarget } from '../transport/ssh/types.js'
import { outputSink } from '../transport/ssh/streams.js'
import { exitCodeOf } from '../transport/ssh/exec.js'
import { workdirFor } from './run/workdir.js'
import { startMark } from '../start-marks.js'
import type { BrokerClient } from '../transport/broker/client.js'
import type { Lease, LeaseCapabilities } from '../providers/types.js'
import { TARGET_ALIASES, WINDOWS_MODE_ALIASES } from '../protocol/targets.js'

export interface SshFlags {
  /** A lease ID or slug; resolved through the broker or this machine's lease records. */
  id?: string
  print?: boolean
  /** Whether to print the command line when no command is given (default: `printsByDefault()`). */
  printWithoutCommand?: boolean
  /** Without a command: a pty shell even when stdin is not a terminal (`ssh -t`). */
  tty?: boolean
  /** Use a lease another checkout claimed, moving the claim here. */
  reclaim?: boolean
  /** Print a delegated provider's SSH token in the command line instead of leaving it out. */
  showSecret?: boolean
}

export interface ResolvedTarget {
  leaseId: string
  target: SshTarget
  kind: ReadyKind
  /** Set for broker leases: the session heartbeats the lease. */
  broker?: BrokerClient
  idleTimeoutSeconds?: number
  /** The lease's work root: commands and shells start in this checkout's synced copy under it. */
  workRoot?: string
  /** Who made the lease (`ssh` for a static host) and what it was set up with. */
  provider?: string
  slug?: string
  capabilities?: LeaseCapabilities
  /** The runner's OS: from the broker's lease record or the machine's labels; a static host's from `--target`. */
  os?: LeaseOS
  /** A delegated provider's SSH access (a token): revoke it once the command is done. */
  revoke?: () => Promise<void>
  /** The SSH user is that token: a printed command line leaves it out unless asked. */
  secretUser?: boolean
}

export interface LeaseOS {
  target: 'linux' | 'macos' | 'windows'
  windowsMode?: 'normal' | 'wsl2'
}

/** A lease's OS: the broker's record, else a `target` the provider kept in the details, else `fallback`. */
export function leaseOS(lease: Pick<Lease, 'details'>, fallback: LeaseOS): LeaseOS {
  const details = lease.details as { record?: { target?: unknown; windowsMode?: unknown }; target?: unknown; windowsMode?: unknown }
  const source = details.record ?? details
  const target = typeof source.target === 'string' ? TARGET_ALIASES[source.target.toLowerCase()] : undefined
  if (!target) return fallback
  const mode = typeof source.windowsMode === 'string' ? WINDOWS_MODE_ALIASES[source.windowsMode.toLowerCase()] : undefined
  return target === 'windows' ? { target, windowsMode: mode ?? 'normal' } : { target }
}

export interface SshResult {
  leaseId: string
  target: string
  /** `--print`, or no command with stdout not a terminal: the equivalent OpenSSH command line. */
  openssh?: string
  /** Remote exit status of the command or shell (null when it died by a signal). */
  code?: number | null
  signal?: string
}

/** The names of the ssh provider (an existing host). */
export const STATIC_PROVIDERS = new Set(['ssh', 'static', 'static-ssh'])

/** A static host is what `--target` (and `--windows-mode`) say it is. */
const configOS = (config: ServiceContext['config']): LeaseOS =>
  config.target === 'windows' ? { target: 'windows', windowsMode: config.windows.mode } : { target: config.target }

/**
 * Flags and config → where to connect. `--id` resolves a lease (broker or
 * direct records); otherwise the configured static host (`--provider ssh
 * --static-host H`, or the `static` config block).
 */
export async function resolveSshTarget(
  context: ServiceContext,
  flags: Pick<SshFlags, 'id' | 'reclaim'>,
  options: { delegatedSsh?: boolean } = {},
): Promise<ResolvedTarget> {
  const { config } = context
  // The lease is claimed for this checkout, as `run` does: another checkout's lease needs --reclaim.
  const { claimLease, reclaimedWarning } = await import('./claims.js')
  const claims = { repoRoot: context.repoRoot ?? context.cwd, reclaim: flags.reclaim ?? false }
  const claim = async (lease: Lease) => {
    const { reclaimedFrom } = await claimLease(lease, claims)
    if (reclaimedFrom) context.progress.warn(reclaimedWarning(lease, reclaimedFrom))
  }
  if (flags.id) {
    const { leaseBackend } = await import('./lease.js')
    const backend = await leaseBackend({ config, progress: context.progress })
    const resolved = await backend.resolve(flags.id)
    // A delegated provider's machine is reached only through the provider itself (`crabbox ssh`: its SSH access, when it has one).
    if (resolved.details.delegated && options.delegatedSsh) {
      const access = await delegatedSshAccess(context, resolved)
      if (access) return access
    }
    if (resolved.details.delegated)
      throw new CrabboxError(`${resolved.provider} owns the connection to ${resolved.id}: crabbox has no SSH access to it`, {
        exit: 'usage',
        code: 'unsupported',
        hint: `run commands there with \`crabbox run --id ${resolved.id} -- <command>\``,
      })
    const { reachLease } = await import('./network.js')
    const lease = await reachLease(resolved, context, { broker: backend.broker })
    await claim(lease)
    return {
      leaseId: lease.id,
      target: lease.ssh,
      kind: backend.readiness(lease),
      broker: backend.broker,
      idleTimeoutSeconds: lease.idleTimeoutSeconds,
      // A Windows runner's shell is cmd.exe: no `cd` prefix, commands and shells start in the home folder.
      workRoot: lease.windows ? undefined : lease.workRoot,
      provider: lease.provider,
      slug: lease.slug,
      capabilities: lease.capabilities,
      os: leaseOS(lease, STATIC_PROVIDERS.has(lease.provider) ? configOS(config) : { target: 'linux' }),
    }
  }
  // A configured static host is the target when the provider is ssh, or was never chosen.
  const providerDefaulted = (config.sources.provider ?? 'default').startsWith('default')
  if (config.static.host && (STATIC_PROVIDERS.has(config.provider) || providerDefaulted)) {
    const { sshProvider } = await import('../providers/ssh.js')
    const lease = await sshProvider.resolve(config.static.name || config.static.host, context)
    await claim(lease)
    return {
      leaseId: lease.id,
      target: lease.ssh,
      kind: 'static',
      // A Windows runner's shell is cmd.exe: no `cd` prefix, commands and shells start in the home folder.
      workRoot: lease.windows ? undefined : lease.workRoot,
      provider: 'ssh',
      slug: lease.slug,
      // What the operator declares now, over what an older claim recorded.
      capabilities: {
        desktop: config.static.desktop ?? false,
        browser: config.static.browser ?? false,
        code: config.static.code ?? false,
      },
      os: configOS(config),
    }
  }
  throw new CrabboxError('crabbox ssh needs a lease or a static host', {
    exit: 'usage',
    hint: 'pass --id <lease>, or --provider ssh --static-host HOST [--static-user U] [--static-port P] (or set static.host in config)',
  })
}

/** A delegated lease's SSH access through its provider (Daytona's token), or undefined when the provider has none. */
async function delegatedSshAccess(context: ServiceContext, lease: Lease): Promise<ResolvedTarget | undefined> {
  const { directProvider } = await import('../providers/registry.js')
  const provider = await directProvider(lease.provider)
  if (!provider.sshAccess) return undefined
  const access = await provider.sshAccess(lease, { config: context.config, progress: context.progress })
  return {
    leaseId: lease.id,
    target: access.target,
    kind: 'static',
    workRoot: lease.workRoot,
    provider: lease.provider,
    slug: lease.slug,
    capabilities: lease.capabilities,
    revoke: access.revoke,
    secretUser: access.secretUser,
  }
}

const quoteArg = (value: string) => (/^[\w@%+=:,./~-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`)
/**
 * The same connection for users and scripts that want their own client: per-lease key,
 * the known_hosts file crabbox pins host keys in, and the port. Paths are absolute, so
 * the words can be run without a shell.
 */
export function opensshCommand(target: SshTarget, remote: string[] = []): string {
  const args = [
    'ssh',
    '-i',
    target.privateKeyPath,
    '-p',
    String(target.port),
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `UserKnownHostsFile=${target.knownHostsPath}`,
    '-o',
    'StrictHostKeyChecking=accept-new',
    '-o',
    'ServerAliveInterval=15',
    '-o',
    'ServerAliveCountMax=2',
    `${target.user}@${target.host}`,
  ]
  if (remote.length) args.push('--', ...remote)
  return args.map(quoteArg).join(' ')
}

/**
 * Without a command, `crabbox ssh` prints the OpenSSH command line when its stdout is not a
 * terminal (`$(crabbox ssh --id X)`, a tool capturing it), unless stdin carries input (a pipe
 * or a file): that is a script for the remote login shell, as with `ssh host < script`.
 */
export function printsByDefault(): boolean {
  if (process.stdout.isTTY) return false
  if (process.stdin.isTTY) return true
  try {
    const stdin = fstatSync(0)
    return !(stdin.isFIFO() || stdin.isFile() || stdin.isSocket())
  } catch {
    return true // no stdin at all
  }
}

/**
 * `crabbox ssh`: `--print` (or no command with stdout not a terminal, see
 * `printsByDefault`) prints an OpenSSH command line; with a command it
 * runs it (through the connection agent when available) and passes its exit
 * code through; without one it opens an interactive pty shell.
 */
export async function sshCommand(context: ServiceContext, flags: SshFlags, argv: string[], hooks: SessionHooks = {}): Promise<SshResult> {
  const resolved = await resolveSshTarget(context, flags, { delegatedSsh: true })
  const { leaseId, target, revoke } = resolved
  startMark('ssh: lease resolved')
  const where = `${target.user}@${target.host}:${target.port}`
  const printLine = flags.print || (argv.length === 0 && !flags.tty && (flags.printWithoutCommand ?? printsByDefault()))
  if (printLine) return printedLine(context, flags, resolved, argv)
  try {
    return await sshSession(context, flags, argv, { ...resolved, where }, hooks)
  } finally {
    await revoke?.().catch((error: Error) => context.progress.warn(`could not revoke the SSH access to ${leaseId}: ${error.message}`))
  }
}

/** The token that stands for the SSH user in a printed line without --show-secret. */
export const REDACTED_USER = '<redacted-token>'

/**
 * The OpenSSH line for `--print`. A delegated provider's token user is left out unless
 * `--show-secret` (and then stays valid until it expires): a line in a log or a terminal
 * scrollback must not let anyone in. Left out, nobody can use the token, so it is revoked.
 */
async function printedLine(context: ServiceContext, flags: SshFlags, resolved: ResolvedTarget, argv: string[]): Promise<SshResult> {
  const { leaseId, target, revoke } = resolved
  const where = `${target.user}@${target.host}:${target.port}`
  if (!resolved.secretUser || flags.showSecret) return { leaseId, target: where, openssh: opensshCommand(target, argv) }
  await revoke?.().catch((error: Error) => context.progress.warn(`could not revoke the SSH access to ${leaseId}: ${error.message}`))
  context.progress.warn('the SSH user is an access token and was left out of the line: add --show-secret to print a usable one')
  const hidden = { ...target, user: REDACTED_USER }
  return { leaseId, target: `${hidden.user}@${target.host}:${target.port}`, openssh: opensshCommand(hidden, argv) }
}

/** For the fast path's agent lane (ssh-lane.ts): what a command was resolved to, just before it runs. */
export interface SessionHooks {
  beforeCommand?: (resolved: ResolvedTarget, prefix: string) => void
}

async function sshSession(
  context: ServiceContext,
  flags: SshFlags,
  argv: string[],
  resolved: ResolvedTarget & { where: string },
  hooks: SessionHooks,
): Promise<SshResult> {
  const { leaseId, target, where, broker, idleTimeoutSeconds, workRoot } = resolved

  const { openSession } = await import('../transport/ssh/index.js')
  const session = await openSession(target, {
    progress: context.progress,
    agentIdleTimeoutMs: parseDuration(context.config.agent.idleTimeout),
    // A command: the agent connects and runs it in one request (connection errors come from the exec).
    connectWithExec: argv.length > 0,
  })
  startMark('ssh: session')
  // A broker lease stays alive while the shell or command runs.
  const heartbeat = broker
    ? (await import('./heartbeat.js')).leaseHeartbeat(broker, { id: leaseId, idleTimeoutSeconds }, context.progress)
    : undefined
  // Like `run`: start in this checkout's synced copy when the runner has one, else in the home folder.
  const workdir = workRoot ? workdirFor(workRoot, leaseId, context.repoRoot ?? context.cwd) : undefined
  const prefix = workdir ? `cd -- ${quoteArg(workdir)} 2>/dev/null; ` : ''
  const inWorkdir = (command: string) => prefix + command
  try {
    if (argv.length) hooks.beforeCommand?.(resolved, prefix)
    // Like OpenSSH: a pty only when stdin is a terminal (or --tty); otherwise a login shell reads stdin and ends at EOF.
    const result = argv.length
      ? await runRemote(session, inWorkdir(argv.join(' ')))
      : process.stdin.isTTY || flags.tty
        ? await interactive(session, workdir ? inWorkdir(LOGIN_SHELL) : undefined)
        : await runRemote(session, inWorkdir(LOGIN_SHELL))
    startMark('ssh: remote command')
    if (result.code !== 0) throw new RemoteExit(exitCodeOf(result))
    return { leaseId, target: where, ...result }
  } finally {
    heartbeat?.stop()
    await session.close()
    startMark('ssh: session closed')
  }
}

type Session = Awaited<ReturnType<typeof import('../transport/ssh/index.js').openSession>>

/**
 * Ctrl-C (and SIGTERM/SIGHUP) reach the remote process as that signal instead
 * of killing us. A closed stdout (`crabbox ssh -- yes | head`) stops it with
 * SIGTERM (sshd's sessions ignore SIGPIPE) and we exit as if killed by SIGPIPE.
 */
function forwardSignals(): { signal: AbortSignal; brokenPipe: () => boolean; dispose(): void } {
  let brokenPipe = false
  const controller = new AbortController()
  const handlers: Array<() => void> = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((name) => {
    const handler = () => controller.abort(name)
    process.on(name, handler)
    return () => void process.off(name, handler)
  })
  const onOutputError = (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') return
    brokenPipe = true
    controller.abort('SIGTERM')
  }
  process.stdout.on('error', onOutputError)
  handlers.push(() => void process.stdout.off('error', onOutputError))
  return { signal: controller.signal, brokenPipe: () => brokenPipe, dispose: () => handlers.forEach((off) => off()) }
}

async function runRemote(session: Session, command: string): Promise<ExecResult> {
  const signals = forwardSignals()
  // Like ssh: piped stdin goes to the remote command; a terminal's stdin is left alone.
  const stdin = process.stdin.isTTY ? undefined : process.stdin
  try {
    const result = await session.exec(command, {
      stdin,
      signal: signals.signal,
      stdout: outputSink(process.stdout, () => signals.signal.aborted),
      stderr: outputSink(process.stderr, () => false),
    })
    return signals.brokenPipe() ? { code: null, signal: 'SIGPIPE' } : result
  } finally {
    signals.dispose()
    stdin?.destroy()
  }
}

// eslint-disable-next-line no-template-curly-in-string -- a shell parameter expansion, not a template
const LOGIN_SHELL = 'exec "${SHELL:-/bin/sh}" -l'

async function interactive(session: Session, command: string | undefined): Promise<ExecResult> {
  const { stdin, stdout } = process
  const shell = await session.shell({ command, rows: stdout.rows, cols: stdout.columns, term: process.env.TERM })
  const resize = () => shell.resize(stdout.rows, stdout.columns)
  if (stdin.isTTY) stdin.setRawMode(true)
  stdout.on('resize', resize)
  stdin.pipe(shell.channel)
  shell.channel.pipe(stdout, { end: false })
  shell.channel.stderr.pipe(process.stderr, { end: false })
  try {
    return await shell.done
  } finally {
    stdout.off('resize', resize)
    stdin.unpipe(shell.channel)
    if (stdin.isTTY) stdin.setRawMode(false)
    stdin.destroy()
  }
}
