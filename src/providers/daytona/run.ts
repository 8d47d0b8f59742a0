import { randomBytes } from 'node:crypto'
import type { Sandbox } from '@daytonaio/sdk'
import { CrabboxError } from '../../errors.js'
import { shellQuote } from '../../transport/ssh/exec.js'
import type { CheckoutArchive, DelegatedRunRequest, ProviderContext } from '../types.js'
import { api, daytonaClient } from './client.js'
import { openSshAccess, type DaytonaSshAccess } from './ssh.js'
import type { SshSession } from '../../transport/ssh/types.js'
import type { Writable } from 'node:stream'

/** How often the command's state and output are fetched while it runs. */
const POLL_MS = 200

/** The command as one shell string: `--shell` (or a single word) as written, otherwise each word quoted. */
export function commandLine(argv: string[], shell: boolean): string {
  return shell || argv.length === 1 ? argv.join(' ') : argv.map(shellQuote).join(' ')
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })

/** The packed checkout in memory (the toolbox file API takes a buffer). */
async function packed(checkout: CheckoutArchive): Promise<Buffer> {
  const { stream, done } = checkout.open()
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)
  await done
  return Buffer.concat(chunks)
}

/** Uploads the checkout archive through the toolbox file API and unpacks it in `workdir`. */
async function upload(sandbox: Sandbox, workdir: string, archive: Buffer): Promise<void> {
  const remote = `/tmp/crabbox-${randomBytes(6).toString('hex')}.tgz`
  await api('upload', () => sandbox.fs.uploadFile(archive, remote))
  const script = `mkdir -p ${shellQuote(workdir)} && tar -xzf ${remote} -C ${shellQuote(workdir)}; s=$?; rm -f ${remote}; exit $s`
  const unpacked = await api('unpack', () => sandbox.process.executeCommand(`sh -c ${shellQuote(script)}`))
  if (unpacked.exitCode !== 0)
    throw new CrabboxError(`daytona unpack failed (exit ${unpacked.exitCode}): ${unpacked.result.trim().split('\n').at(-1) ?? ''}`)
}

interface Logs {
  output?: string
  stdout?: string
  stderr?: string
}

interface Streams {
  out: NodeJS.WritableStream
  err: NodeJS.WritableStream
}

/** Follows a session command: new output as it appears, until it has an exit code or the run is interrupted. */
async function follow(sandbox: Sandbox, session: string, commandId: string, streams: Streams, signal: AbortSignal): Promise<number> {
  const seen = { out: 0, err: 0 }
  const flush = async () => {
    // Without callbacks the SDK answers with the whole log so far (over HTTP, no socket).
    const logs = (await api('command logs', () => sandbox.process.getSessionCommandLogs(session, commandId))) as Logs | undefined
    const stderr = logs?.stderr ?? ''
    // Daemons that keep one combined stream report it as `output` only.
    const stdout = logs?.stdout || (stderr ? '' : (logs?.output ?? ''))
    if (stdout.length > seen.out) streams.out.write(stdout.slice(seen.out))
    if (stderr.length > seen.err) streams.err.write(stderr.slice(seen.err))
    seen.out = Math.max(seen.out, stdout.length)
    seen.err = Math.max(seen.err, stderr.length)
  }
  for (;;) {
    if (signal.aborted) return 130
    const command = await api('command status', () => sandbox.process.getSessionCommand(session, commandId))
    await flush()
    if (command.exitCode !== undefined && command.exitCode !== null) return command.exitCode
    await sleep(POLL_MS, signal)
  }
}

/**
 * `run` on a Daytona sandbox: over SSH with a Daytona SSH access token when Daytona gives one
 * and the gateway lets crabbox in, else through the toolbox API.
 */
export async function runDaytona(request: DelegatedRunRequest, context: ProviderContext): Promise<number> {
  const { lease, workdir } = request
  if (!workdir) throw new CrabboxError('daytona runs need a work folder on the lease')
  const daytona = await daytonaClient(context.config)
  const sandbox = await api(`get ${lease.id}`, () => daytona.get(lease.id))
  const ssh = await sshSession(sandbox, context)
  if (ssh) return runOverSsh(ssh, request, workdir, context)
  return runThroughToolbox(sandbox, request, workdir, context)
}

type OpenSsh = { session: SshSession; access: DaytonaSshAccess }

/** An SSH session on the sandbox, or undefined (with a warning) when Daytona gives no access or the gateway refuses it. */
async function sshSession(sandbox: Sandbox, context: ProviderContext): Promise<OpenSsh | undefined> {
  let access: DaytonaSshAccess | undefined
  try {
    access = await openSshAccess(sandbox, context.config)
    const { openSession } = await import('../../transport/ssh/index.js')
    // In this process: the token's connection ends with the run.
    const session = await openSession(access.target, { useAgent: false, progress: context.progress })
    return { session, access }
  } catch (error) {
    await access?.revoke().catch(() => undefined)
    context.progress.warn(`daytona: no SSH access to ${sandbox.id} (${(error as Error).message}); running through the toolbox API`)
    return undefined
  }
}

/**
 * The run over SSH: the archive unpacked by `tar` from the channel's stdin, then the command
 * with its output streamed and its exit code; Ctrl-C signals the remote command and closes the
 * channel. The token is revoked at the end.
 */
async function runOverSsh(ssh: OpenSsh, request: DelegatedRunRequest, workdir: string, context: ProviderContext): Promise<number> {
  const { session, access } = ssh
  const { signal, checkout } = request
  try {
    if (checkout) {
      const stderr: Buffer[] = []
      const script = `mkdir -p ${shellQuote(workdir)} && tar -xzf - -C ${shellQuote(workdir)}`
      const unpacked = await session.exec(script, { stdin: await packed(checkout), onStderr: (chunk) => stderr.push(chunk) })
      if (unpacked.code !== 0)
        throw new CrabboxError(
          `daytona unpack failed (exit ${unpacked.code}): ${Buffer.concat(stderr).toString('utf8').trim().split('\n').at(-1) ?? ''}`,
        )
    }
    const script = `cd ${shellQuote(workdir)} && ${commandLine(request.argv, request.shell)}`
    const result = await session.exec(script, {
      stdout: (request.stdoutToStderr ? process.stderr : process.stdout) as Writable,
      stderr: process.stderr as Writable,
      signal,
    })
    if (signal.aborted) return 130
    return result.code ?? 128 + 15
  } finally {
    await session.close()
    await access
      .revoke()
      .catch((error: Error) => context.progress.warn(`could not revoke the SSH access to ${request.lease.id}: ${error.message}`))
  }
}

/**
 * The run through the toolbox API: the manifest archive is uploaded and unpacked, the command
 * runs in its own session (output fetched as it grows, the real exit code at the end). Ctrl-C
 * deletes the session, which stops the command.
 */
async function runThroughToolbox(
  sandbox: Sandbox,
  request: DelegatedRunRequest,
  workdir: string,
  context: ProviderContext,
): Promise<number> {
  const { lease, signal, checkout } = request
  if (checkout) await upload(sandbox, workdir, await packed(checkout))
  const session = `crabbox-${randomBytes(6).toString('hex')}`
  await api('create session', () => sandbox.process.createSession(session))
  const script = `cd ${shellQuote(workdir)} && ${commandLine(request.argv, request.shell)}`
  const streams = { out: request.stdoutToStderr ? process.stderr : process.stdout, err: process.stderr }
  try {
    const started = await api('run', () =>
      sandbox.process.executeSessionCommand(session, { command: `sh -c ${shellQuote(script)}`, runAsync: true }),
    )
    if (!started.cmdId) throw new CrabboxError('daytona run failed: the toolbox returned no command ID')
    return await follow(sandbox, session, started.cmdId, streams, signal)
  } finally {
    // Deleting the session ends whatever still runs in it (the Ctrl-C path).
    await sandbox.process.deleteSession(session).catch((error: Error) => {
      if (signal.aborted) context.progress.warn(`could not stop the command in ${lease.id}: ${error.message}`)
    })
  }
}
