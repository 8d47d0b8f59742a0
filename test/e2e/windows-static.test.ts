import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'
import { generateEd25519Pair } from '../../src/transport/ssh/keys.js'
import { windowsHost, type WindowsHost } from '../support/windows-host.js'

/**
 * `--provider ssh --target windows` end to end with the built CLI against the
 * stand-in Windows SSH server (test/support/windows-host.ts): no Windows and
 * no PowerShell here, so this proves the exact exec strings crabbox sends and
 * what it does with the answers, not Windows itself.
 */

/** Arguments Windows' command-line rules and PowerShell would each mangle if quoted wrong. */
const TRICKY = ['two words', 'say "hi"', '$HOME and $(whoami)', '%PATH%', "it's", 'ünïcødé ☃ 🦀', '', 'trailing\\', 'back\\"slash']
const PRINT_ARGS = "process.stdout.write(JSON.stringify(process.argv.slice(1)) + '|' + require('fs').readFileSync('hello.txt', 'utf8'))"

describe('a static Windows host (stand-in)', () => {
  let host: WindowsHost
  let home: CliHome
  let repo: string

  beforeAll(async () => {
    host = await windowsHost()
    home = cliHome()
    const key = await generateEd25519Pair()
    writeFileSync(join(home.dir, 'id_win'), key.private, { mode: 0o600 })
    host.authorize(key.public)
    home.env = { ...home.env, CRABBOX_SSH_KEY: join(home.dir, 'id_win'), CRABBOX_NO_AGENT: '1' }
    repo = gitRepo('crabbox-windows-repo-')
  })
  afterAll(async () => {
    await host?.stop()
    rmSync(repo, { recursive: true, force: true })
  })

  const at = () => ['--provider', 'ssh', '--static-host', '127.0.0.1', '--static-port', String(host.port), '--target', 'windows']
  const cli = (args: string[]) => runCli(args, { home, cwd: repo, timeoutMs: 90_000 })

  it('warmup → run -- node -e … → stop: encoded PowerShell with every argument as typed, tar.exe sync, exit codes', async () => {
    const warm = await cli(['warmup', ...at(), '--json'])
    expect(warm.code, warm.stderr).toBe(0)
    const id = JSON.parse(warm.stdout).id as string
    expect(id).toBe('static_127_0_0_1')
    // The readiness check is the Windows one (tar.exe), not `command -v sh tar git`.
    expect(host.execs.map((e) => e.kind)).toEqual(['tools'])

    host.execs.length = 0
    const run = await cli(['run', '--id', id, ...at(), '--', 'node', '-e', PRINT_ARGS, ...TRICKY])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe(`${JSON.stringify(TRICKY)}|hello from the checkout\n`)
    const [sync, command, ...rest] = host.execs
    expect(rest).toEqual([])
    const workdir = `C:\\crabbox\\${id}\\${repo.split('/').pop()}`
    // Every exec string is one cmd.exe-safe line: powershell.exe and base64, nothing else.
    for (const exec of host.execs)
      expect(exec.command).toMatch(
        /^powershell\.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand [A-Za-z0-9+/=]+$/,
      )
    expect(sync).toMatchObject({ kind: 'program', program: 'tar.exe', args: ['-xf', '-'], folder: workdir })
    expect(sync.script).toContain(`New-Item -ItemType Directory -Force -Path '${workdir}' | Out-Null`)
    expect(readFileSync(join(host.local(workdir), 'hello.txt'), 'utf8')).toBe('hello from the checkout\n')
    expect(command).toMatchObject({ kind: 'program', program: 'node', args: ['-e', PRINT_ARGS, ...TRICKY], folder: workdir })

    const failing = await cli(['run', '--id', id, ...at(), '--no-sync', '--', 'node', '-e', 'process.exit(7)'])
    expect(failing.code, failing.stderr).toBe(7)

    const stop = await cli(['stop', id, '--provider', 'ssh'])
    expect(stop.code, stop.stderr).toBe(0)
  })

  it('WSL2 mode: the tool check and every exec go through wsl.exe, with the Linux sync and command line', async () => {
    host.execs.length = 0
    const wsl = await cli(['run', ...at(), '--windows-mode', 'wsl2', '--', 'sh', '-c', 'cat hello.txt; echo "$1"', 'sh', '$HOME "q" ☃'])
    expect(wsl.code, wsl.stderr).toBe(0)
    expect(wsl.stdout).toBe('hello from the checkout\n$HOME "q" ☃\n')
    const kinds = host.execs.map((e) => e.kind)
    expect(kinds.length).toBeGreaterThan(2)
    expect(kinds.every((kind) => kind === 'wsl')).toBe(true)
    // The readiness check asks the default distribution for sh, tar and git.
    expect(host.execs[0].linux).toBe('for tool in sh tar git; do command -v "$tool" >/dev/null 2>&1 || echo "$tool"; done')
    host.execs.length = 0
  })

  it('refuses a desktop, and names the names Windows cannot hold before sending anything', async () => {
    const desktop = await cli(['run', ...at(), '--desktop', '--', 'node', '-v'])
    expect(desktop.code).toBe(2)
    expect(desktop.stderr).toContain('crabbox does not install a Windows desktop yet')

    const bad = gitRepo('crabbox-windows-bad-', { 'aux.txt': 'device\n', 'ok.txt': 'fine\n' })
    host.execs.length = 0
    const refused = await runCli(['run', ...at(), '--', 'node', '-v'], { home, cwd: bad, timeoutMs: 90_000 })
    expect(refused.code, refused.stderr).toBe(6)
    expect(refused.stderr).toContain('aux.txt: "aux.txt" is a device name Windows reserves')
    expect(host.execs.some((e) => e.program === 'tar.exe')).toBe(false)
    rmSync(bad, { recursive: true, force: true })
  })
})
