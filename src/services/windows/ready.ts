import { readFile } from 'node:fs/promises'
import { renderWindowsBootstrap, WINDOWS_DEFAULTS, WINDOWS_READY_SCRIPT } from '../../cloud/windows-bootstrap.js'
import { CrabboxError } from '../../errors.js'
import type { Lease } from '../../providers/types.js'
import { openSession } from '../../transport/ssh/index.js'
import { waitForReady } from '../../transport/ssh/readiness.js'
import type { SshTarget } from '../../transport/ssh/types.js'
import type { Progress } from '../../ui/progress.js'
import { powershellCommand, powershellStdinCommand, wslCommand } from '../run/target-command.js'

/**
 * Readiness of a Windows runner. An existing host (the ssh provider) is checked
 * for the tools sync needs: `tar.exe` natively; in WSL2 mode `wsl.exe` and sh,
 * tar and git in the default distribution. A machine crabbox made (AWS) first
 * answers SSH on port 22 with the lease key (EC2Launch); crabbox then runs the
 * PowerShell bootstrap over SSH, on stdin, until it prints
 * `crabbox-bootstrap: ready`. When it prints `crabbox-bootstrap: restart`
 * (WSL2: the features just turned on need one), crabbox waits for SSH to come
 * back and runs it again; then `crabbox-ready.ps1` must pass.
 */

const READY = 'crabbox-bootstrap: ready'
const RESTART = 'crabbox-bootstrap: restart'
/** A bootstrap asks for at most one restart (WSL2); one more run allows for a slow feature. */
const MAX_RUNS = 3

/** The static check: names of missing tools on stdout, nothing when ready. */
export function windowsToolCheck(mode: 'normal' | 'wsl2'): { command: string; needs: string } {
  if (mode === 'wsl2')
    return {
      command: wslCommand('for tool in sh tar git; do command -v "$tool" >/dev/null 2>&1 || echo "$tool"; done'),
      needs: 'WSL2 with a default distribution that has sh, tar and git',
    }
  return {
    command: powershellCommand("if (-not (Get-Command tar.exe -ErrorAction SilentlyContinue)) { 'tar.exe' }; exit 0"),
    needs: 'the OpenSSH server and tar.exe (Windows 10 1803 and later ship both)',
  }
}

export interface WindowsReadyOptions {
  timeoutMs: number
  progress: Progress
  signal?: AbortSignal
  /** Pause after a bootstrap restarts the machine, before SSH is tried again (CRABBOX_WINDOWS_RESTART_WAIT_MS). */
  restartWaitMs?: number
}

/** Waits for a Windows runner and bootstraps it when crabbox made it; resolves with the target on the port that answered. */
export async function waitWindowsReady(lease: Lease, options: WindowsReadyOptions): Promise<SshTarget> {
  const windows = lease.windows!
  const deadline = Date.now() + options.timeoutMs
  const wait = (target: SshTarget, check: { command: string; needs?: string }, kind: 'managed' | 'static') =>
    waitForReady(target, kind, {
      timeoutMs: Math.max(1, deadline - Date.now()),
      progress: options.progress,
      signal: options.signal,
      readyCommand: check.command,
      needs: check.needs,
    })
  if (!windows.bootstrap) return wait(lease.ssh, windowsToolCheck(windows.mode), 'static')
  const script = renderWindowsBootstrap({
    sshPublicKey: (await readFile(`${lease.ssh.privateKeyPath}.pub`, 'utf8')).trim(),
    sshPort: String(lease.ssh.port),
    sshFallbackPorts: lease.ssh.fallbackPorts.map(String),
    workRoot: WINDOWS_DEFAULTS.workRoot,
    windowsMode: windows.mode,
  })
  const answers = { command: powershellCommand('exit 0') }
  let target = lease.ssh
  for (let run = 1; run <= MAX_RUNS; run++) {
    target = await wait(target, answers, 'managed')
    options.progress.phase(`bootstrapping Windows on ${lease.ssh.host}${run > 1 ? ` (run ${run})` : ''}`)
    const said = await runBootstrap(target, script, options.signal)
    if (said.includes(READY)) {
      await checkReady(target)
      return target
    }
    if (!said.includes(RESTART)) throw bootstrapFailed(lease, said)
    options.progress.info(`${lease.ssh.host} restarts to finish turning WSL2 on; bootstrapping again after`)
    await new Promise((resolve) => setTimeout(resolve, options.restartWaitMs ?? restartWaitMs()))
  }
  throw bootstrapFailed(lease, `still asking for a restart after ${MAX_RUNS} runs`)
}

const restartWaitMs = () => Number(process.env.CRABBOX_WINDOWS_RESTART_WAIT_MS ?? 20_000)

/** One bootstrap run on stdin; resolves with what it printed (stdout and stderr) and its exit status. */
async function runBootstrap(target: SshTarget, script: string, signal?: AbortSignal): Promise<string> {
  const session = await openSession(target, { useAgent: false })
  let out = ''
  try {
    const result = await session.exec(powershellStdinCommand(), {
      stdin: script,
      signal,
      onStdout: (chunk) => (out += chunk.toString()),
      onStderr: (chunk) => (out += chunk.toString()),
    })
    return `${out}${result.code === 0 ? '' : `\n(exit ${result.code ?? result.signal})`}`
  } catch (error) {
    // A restart may drop the connection before the exit status arrives: what was printed decides.
    if (out.includes(RESTART)) return out
    throw error
  } finally {
    await session.close().catch(() => {})
  }
}

/** `crabbox-ready.ps1`, which the bootstrap wrote: git, tar, the work root (and the distribution in WSL2 mode). */
async function checkReady(target: SshTarget): Promise<void> {
  const session = await openSession(target, { useAgent: false })
  let out = ''
  try {
    const result = await session.exec(powershellCommand(WINDOWS_READY_SCRIPT), { onStdout: (chunk) => (out += chunk.toString()) })
    if (result.code !== 0)
      throw new CrabboxError(`the Windows runner ${target.host} is not ready after its bootstrap: ${out.trim() || `exit ${result.code}`}`, {
        exit: 'provisioning',
        code: 'runner_not_ready',
        hint: 'the lease is released; run again, or keep it (--keep) and look with crabbox ssh',
      })
  } finally {
    await session.close().catch(() => {})
  }
}

const bootstrapFailed = (lease: Lease, said: string) =>
  new CrabboxError(`the Windows bootstrap failed on ${lease.ssh.host}: ${said.trim().split('\n').slice(-5).join(' | ') || 'no output'}`, {
    exit: 'provisioning',
    code: 'runner_not_ready',
    hint: 'the lease is released; run again, or keep it (--keep) and look with crabbox ssh',
  })
