import type { ServiceContext } from '../context.js'
import { CrabboxError } from '../../errors.js'
import type { BrokerClient } from '../../transport/broker/client.js'
import type { SshSession } from '../../transport/ssh/types.js'
import { resolveSshTarget } from '../ssh.js'

/** A lease to run short scripts on (Actions hydration and the cache commands). */
export interface LeaseShell {
  leaseId: string
  /** Slug (or ID), for messages. */
  name: string
  workRoot?: string
  broker?: BrokerClient
  idleTimeoutSeconds?: number
  session: SshSession
  /** Runs `script` with `args` as `$1…` (sh -c); output captured, exit code returned. */
  sh(script: string, args?: string[], options?: { stdin?: string; bash?: boolean }): Promise<ScriptResult>
  close(): Promise<void>
}

export interface ScriptResult {
  code: number | null
  stdout: string
  stderr: string
}

const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`

export async function leaseShell(context: ServiceContext, flags: { id?: string; reclaim?: boolean }): Promise<LeaseShell> {
  const resolved = await resolveSshTarget(context, flags)
  const { openSession } = await import('../../transport/ssh/index.js')
  const session = await openSession(resolved.target, { progress: context.progress })
  const sh: LeaseShell['sh'] = async (script, args = [], options = {}) => {
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    const shell = options.bash ? 'bash' : 'sh'
    const result = await session.exec(`${shell} -c ${quote(script)} ${shell} ${args.map(quote).join(' ')}`, {
      stdin: options.stdin ?? '',
      onStdout: (chunk) => stdout.push(chunk),
      onStderr: (chunk) => stderr.push(chunk),
    })
    return { code: result.code, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') }
  }
  return {
    leaseId: resolved.leaseId,
    name: resolved.slug || resolved.leaseId,
    workRoot: resolved.workRoot,
    broker: resolved.broker,
    idleTimeoutSeconds: resolved.idleTimeoutSeconds,
    session,
    sh,
    close: () => session.close(),
  }
}

/** A script that must succeed: its stderr (last lines) in the error otherwise. */
export async function mustSucceed(shell: LeaseShell, what: string, script: string, args: string[] = []): Promise<string> {
  const result = await shell.sh(script, args)
  if (result.code === 0) return result.stdout
  const detail = result.stderr.trim().split('\n').slice(-5).join('\n')
  throw new CrabboxError(`${what} failed on ${shell.name} (exit ${result.code ?? 'signal'})${detail ? `: ${detail}` : ''}`)
}
