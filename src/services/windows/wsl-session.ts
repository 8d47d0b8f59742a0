import { randomBytes } from 'node:crypto'
import { shellQuote } from '../../transport/ssh/exec.js'
import type { ExecOptions, SshSession } from '../../transport/ssh/types.js'
import { wslCommand } from '../run/target-command.js'

/**
 * A session on a WSL2 runner that reads like one on a Linux runner: every
 * exec string (with its folder and environment) is carried as base64 through
 * encoded PowerShell and `wsl.exe --exec bash -c`, so the Linux sync, the run
 * command and Ctrl-C's process-group signal all work unchanged inside the
 * distribution. A command too long for cmd.exe's line is first written to a
 * file in the distribution (`/tmp/crabbox-wsl-….sh`, on stdin) and then run
 * from there: two round trips instead of one.
 */
export function wslSession(session: SshSession): SshSession {
  return {
    get port() {
      return session.port
    },
    close: () => session.close(),
    // Interactive sessions start Windows' own shell; `crabbox ssh` says so.
    shell: (options) => session.shell(options),
    async exec(command, options: ExecOptions = {}) {
      const { cwd, env, ...rest } = options
      const linux = linuxLine(command, cwd, env)
      const line = oneLine(linux)
      if (line) return session.exec(line, rest)
      const file = `/tmp/crabbox-wsl-${randomBytes(6).toString('hex')}.sh`
      const staged = await session.exec(wslCommand(`umask 077 && cat > ${file}`), { stdin: linux, signal: rest.signal })
      if (staged.code !== 0)
        throw new Error(`could not stage a ${linux.length}-character command in the WSL distribution (exit ${staged.code})`)
      return session.exec(wslCommand(`bash ${file}; st=$?; rm -f ${file}; exit $st`), rest)
    },
  }
}

/** The folder and environment as a shell prefix, as the SSH transport does for Linux runners. */
function linuxLine(command: string, cwd?: string, env?: Record<string, string>): string {
  const vars = Object.entries(env ?? {})
  const exports = vars.length ? `export ${vars.map(([k, v]) => `${k}=${shellQuote(v)}`).join(' ')}; ` : ''
  return `${exports}${cwd ? `cd ${shellQuote(cwd)} && ` : ''}${command}`
}

/** The exec string, or undefined when it would be longer than cmd.exe takes. */
function oneLine(linux: string): string | undefined {
  try {
    return wslCommand(linux)
  } catch {
    return undefined
  }
}
