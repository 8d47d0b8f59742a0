import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import {
  encodePowerShell,
  psQuote,
  windowsArg,
  windowsRemoteCommand,
  windowsScript,
  wslRemoteCommand,
} from '../../src/services/run/target-command.js'

const QUOTES = "'\u2018\u2019\u201a\u201b"

/** Decodes the exec string's `-EncodedCommand` value back to the PowerShell script (base64 of UTF-16LE). */
function decodeCommand(command: string): string {
  const match = /^powershell\.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ([A-Za-z0-9+/=]+)$/.exec(
    command,
  )
  expect(match, command).not.toBeNull()
  return Buffer.from(match![1], 'base64').toString('utf16le')
}

/** Reads a PowerShell single-quoted string starting at `text[start]` (a doubled quote is one quote). */
function psUnquote(text: string, start: number): string {
  expect(QUOTES).toContain(text[start])
  let out = ''
  for (let i = start + 1; i < text.length; i++) {
    const ch = text[i]
    if (!QUOTES.includes(ch)) out += ch
    else if (text[i + 1] === ch) out += text[i++]
    else return out
  }
  throw new Error('unterminated PowerShell string')
}

/** The C runtime's command-line parser (`CommandLineToArgvW` rules for the arguments after the program name). */
function parseWindowsArgs(line: string): string[] {
  const args: string[] = []
  let i = 0
  while (i < line.length) {
    while (line[i] === ' ' || line[i] === '\t') i++
    if (i >= line.length) break
    let arg = ''
    let quoted = false
    while (i < line.length && (quoted || (line[i] !== ' ' && line[i] !== '\t'))) {
      let slashes = 0
      while (line[i] === '\\') {
        slashes++
        i++
      }
      if (line[i] === '"') {
        arg += '\\'.repeat(Math.floor(slashes / 2))
        if (slashes % 2) arg += '"'
        else if (quoted && line[i + 1] === '"') {
          arg += '"'
          i++
        } else quoted = !quoted
        i++
      } else if (slashes) arg += '\\'.repeat(slashes)
      else arg += line[i++]
    }
    args.push(arg)
  }
  return args
}

/** The value the script gives `$psi.Arguments`, as the started program sees it. */
function startedWith(script: string): { program: string; args: string[] } {
  const program = /Get-Command -Name (')/.exec(script)
  const args = /\$psi\.Arguments = (')/.exec(script)
  expect(program && args, script).toBeTruthy()
  return {
    program: psUnquote(script, program!.index + program![0].length - 1),
    args: parseWindowsArgs(psUnquote(script, args!.index + args![0].length - 1)),
  }
}

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
