import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { decodeCommand, parseWindowsArgs, psUnquote, startedWith } from '../support/powershell.js'
import { WINDOWS_DEFAULTS, renderWindowsBootstrap } from '../../src/cloud/windows-bootstrap.js'
import {
  CMD_LINE_MAX,
  encodePowerShell,
  powershellCommand,
  powershellStdinCommand,
  psQuote,
  windowsArg,
  windowsRemoteCommand,
  windowsScript,
  wslRemoteCommand,
} from '../../src/services/run/target-command.js'

const HARD = [
  'two  spaces',
  "it's",
  '"quoted"',
  '$HOME',
  '%PATH%',
  'ünïcødé ✓ 日本',
  '',
  'trail\\',
  'C:\\a b\\',
  'a\\"b',
  '\u2019smart\u2018',
  'tab\there',
]

describe('PowerShell quoting', () => {
  it('doubles every quote mark PowerShell reads as one, ASCII and typographic', () => {
    expect(psQuote("it's")).toBe("'it''s'")
    expect(psQuote('\u2018x\u2019')).toBe("'\u2018\u2018x\u2019\u2019'")
    expect(psQuote('$env:HOME %PATH% "q"')).toBe('\'$env:HOME %PATH% "q"\'')
    for (const value of HARD) expect(psUnquote(psQuote(value), 0)).toBe(value)
  })

  it('quotes each argument so the C runtime parser gives it back unchanged', () => {
    expect(windowsArg('plain')).toBe('plain')
    expect(windowsArg('')).toBe('""')
    expect(windowsArg('a b')).toBe('"a b"')
    expect(windowsArg('say "hi"')).toBe('"say \\"hi\\""')
    expect(windowsArg('C:\\a b\\')).toBe('"C:\\a b\\\\"')
    expect(windowsArg('C:\\no\\space')).toBe('C:\\no\\space')
    expect(parseWindowsArgs(HARD.map(windowsArg).join(' '))).toEqual(HARD)
  })
})

describe('native Windows command line', () => {
  it('is one encoded PowerShell line with nothing cmd.exe could read', () => {
    const { command, viaShell } = windowsRemoteCommand(['npm', 'test'])
    expect(viaShell).toBe(false)
    expect(command).toMatch(/^[A-Za-z0-9 .+/=-]+$/)
    expect(command.startsWith('powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ')).toBe(true)
    expect(decodeCommand(command)).toBe(windowsScript(['npm', 'test']).script)
    expect(encodePowerShell('ü')).toBe(Buffer.from([0xfc, 0x00]).toString('base64'))
  })

  it('renders the exact script: folder, environment, then the program with its arguments', () => {
    const { command } = windowsRemoteCommand(['node', 'say "hi"', '$x', '%y%'], {
      workdir: "C:\\crabbox\\cbx_0123456789ab\\my repo's",
      env: { CI: 'true', NODE_OPTIONS: '--max-old-space-size=4096 "x"' },
    })
    expect(decodeCommand(command)).toBe(
      [
        "$ErrorActionPreference = 'Stop'",
        "$ProgressPreference = 'SilentlyContinue'",
        '[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false',
        "Set-Location -LiteralPath 'C:\\crabbox\\cbx_0123456789ab\\my repo''s'",
        "$env:CI = 'true'",
        '$env:NODE_OPTIONS = \'--max-old-space-size=4096 "x"\'',
        "$exe = Get-Command -Name 'node' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1",
        "if (-not $exe) { [Console]::Error.WriteLine('crabbox: node: command not found'); exit 127 }",
        '$psi = New-Object System.Diagnostics.ProcessStartInfo',
        '$psi.FileName = $exe.Path',
        '$psi.Arguments = \'"say \\"hi\\"" $x %y%\'',
        '$psi.UseShellExecute = $false',
        '$psi.WorkingDirectory = (Get-Location).Path',
        '$p = [System.Diagnostics.Process]::Start($psi)',
        '$p.WaitForExit()',
        'exit $p.ExitCode',
        '',
      ].join('\r\n'),
    )
  })

  it('delivers every argument exactly as typed: spaces, quotes, $, %, unicode, empty, trailing backslashes', () => {
    const script = decodeCommand(windowsRemoteCommand(['printf.exe', ...HARD]).command)
    expect(startedWith(script)).toEqual({ program: 'printf.exe', args: HARD })
  })

  it('runs --shell words or one argument with PowerShell syntax as a script, passing the exit code', () => {
    const { command, viaShell } = windowsRemoteCommand(['Get-ChildItem | Measure-Object; exit 3'])
    expect(viaShell).toBe(true)
    const script = decodeCommand(command)
    expect(script).toContain('\r\nGet-ChildItem | Measure-Object; exit 3\r\n')
    expect(script).not.toContain('ProcessStartInfo')
    expect(windowsRemoteCommand(['dir'], { shell: true }).viaShell).toBe(true)
    expect(windowsRemoteCommand(['git', 'status']).viaShell).toBe(false)
  })
})

describe('WSL2 command line', () => {
  it('starts wsl.exe --exec bash -c with the Linux line as base64, which bash runs exactly', () => {
    const argv = ['printf', '[%s]', ...HARD.filter((arg) => !arg.includes('\t'))]
    const { command, linux, viaShell } = wslRemoteCommand(argv, { workdir: '/tmp', env: { CI: 'it\'s "1"' } })
    expect(viaShell).toBe(false)
    const started = startedWith(decodeCommand(command))
    expect(started.program).toBe('wsl.exe')
    expect(started.args.slice(0, 3)).toEqual(['--exec', 'bash', '-c'])
    expect(started.args[3]).toMatch(/^eval "\$\(printf %s [A-Za-z0-9+/=]+ \| base64 -d\)"$/)
    expect(started.args).toHaveLength(4)
    // What wsl.exe then does: bash -c <that argument> inside the distribution.
    const run = spawnSync('bash', ['-c', started.args[3]], { encoding: 'utf8', env: { PATH: process.env.PATH } })
    expect(run.stdout).toBe(
      argv
        .slice(2)
        .map((arg) => `[${arg}]`)
        .join(''),
    )
    expect(linux.startsWith("cd /tmp || exit 1\nexport CI='it'\\''s \"1\"'\n")).toBe(true)
    const env = spawnSync('bash', ['-c', wslRemoteCommand(['sh', '-c', 'echo "$CI"; exit 9'], { env: { CI: '$x ✓' } }).linux], {
      encoding: 'utf8',
    })
    expect([env.stdout, env.status]).toEqual(['$x ✓\n', 9])
  })
})

describe('scripts longer than a command line', () => {
  it('are an error as a command line, and go on stdin instead (the bootstrap is one)', () => {
    const bootstrap = renderWindowsBootstrap({
      sshPublicKey: 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 crabbox cbx_0123456789ab',
      sshPort: '2222',
      sshFallbackPorts: ['22'],
      workRoot: WINDOWS_DEFAULTS.workRoot,
      windowsMode: 'wsl2',
    })
    expect(() => powershellCommand(bootstrap)).toThrow(/over the 8191 cmd\.exe takes; send the script on stdin/)
    const stdin = powershellStdinCommand()
    expect(stdin.length).toBeLessThanOrEqual(CMD_LINE_MAX)
    expect(decodeCommand(stdin).split('\r\n').slice(-4)).toEqual([
      '[Console]::InputEncoding = New-Object System.Text.UTF8Encoding $false',
      '& ([scriptblock]::Create([Console]::In.ReadToEnd()))',
      'if ($LASTEXITCODE) { exit $LASTEXITCODE }',
      'exit 0',
    ])
  })
})
