import { shellQuote } from '../../transport/ssh/exec.js'
import { remoteCommandFor } from './remote-command.js'

/**
 * Runner-side command lines for Windows targets. Windows OpenSSH hands the
 * exec string to cmd.exe, so every command is one `powershell.exe
 * -EncodedCommand <base64 of UTF-16LE>` line: base64 has no character cmd.exe
 * or PowerShell treat specially, and UTF-16LE carries any Unicode text.
 *
 * - native (`--windows-mode normal`): a PowerShell script sets the folder and
 *   the environment, then starts the program with .NET `Process`: its
 *   argument string is quoted here by the rules Windows programs parse their
 *   command line with (the C runtime's, `CommandLineToArgvW`), so each argument
 *   arrives as typed: spaces, quotes, `$`, `%` and Unicode included. (A `.cmd`
 *   or `.bat` program is run by cmd.exe, which still expands `%NAME%` in its
 *   arguments: that is cmd.exe's rule, not one crabbox can quote away.)
 * - `--shell` (or one argument with shell syntax): the words are a PowerShell
 *   script, run as written.
 * - WSL2: the Linux command line crabbox builds for any Linux runner, carried
 *   as base64 through `wsl.exe --exec bash -c` and decoded there.
 */

/** Windows PowerShell 5.1 ships with every Windows Server crabbox uses; `pwsh` may be absent. */
const POWERSHELL = 'powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand'

/** PowerShell reads the typographic single quotes as quote marks too, so they are doubled as well. */
export const psQuote = (value: string): string => `'${value.replace(/['\u2018\u2019\u201a\u201b]/g, (quote) => quote + quote)}'`

/** The `-EncodedCommand` value: base64 of the script's UTF-16LE bytes. */
export const encodePowerShell = (script: string): string => Buffer.from(script, 'utf16le').toString('base64')

/** cmd.exe, which Windows OpenSSH runs every exec string through, takes at most this many characters. */
export const CMD_LINE_MAX = 8191

/**
 * The exec string that runs a PowerShell script on a Windows runner. A script
 * too long for cmd.exe's line (the encoding makes it about 2.7 times longer) is
 * an error here rather than a truncated command there: send such a script on
 * stdin with `powershellStdinCommand`.
 */
export function powershellCommand(script: string): string {
  const line = `${POWERSHELL} ${encodePowerShell(script)}`
  if (line.length > CMD_LINE_MAX)
    throw new Error(`the PowerShell command is ${line.length} characters, over the ${CMD_LINE_MAX} cmd.exe takes; send the script on stdin`)
  return line
}

/**
 * The exec string that reads a whole PowerShell script from stdin (UTF-8) and
 * runs it as one script block, exiting with its exit code: for scripts longer
 * than a command line, like the bootstrap.
 */
export const powershellStdinCommand = (): string =>
  powershellCommand(
    [
      ...PRELUDE,
      '[Console]::InputEncoding = New-Object System.Text.UTF8Encoding $false',
      '& ([scriptblock]::Create([Console]::In.ReadToEnd()))',
      'if ($LASTEXITCODE) { exit $LASTEXITCODE }',
      'exit 0',
    ].join('\r\n'),
  )

/**
 * One argument quoted so the C runtime's command-line parser gives it back
 * unchanged: wrapped in `"` when it is empty or has whitespace or `"`, each `"`
 * escaped, and backslashes doubled only where they precede a `"`.
 */
export function windowsArg(arg: string): string {
  if (arg !== '' && !/[\s"]/.test(arg)) return arg
  let out = '"'
  let backslashes = 0
  for (const ch of arg) {
    if (ch === '\\') {
      backslashes++
      continue
    }
    out += ch === '"' ? `${'\\'.repeat(backslashes * 2 + 1)}"` : `${'\\'.repeat(backslashes)}${ch}`
    backslashes = 0
  }
  return `${out}${'\\'.repeat(backslashes * 2)}"`
}

export const windowsCommandLine = (args: string[]): string => args.map(windowsArg).join(' ')

/** Output as UTF-8 (no BOM), stop on errors, no progress bars in the byte stream. */
const PRELUDE = [
  "$ErrorActionPreference = 'Stop'",
  "$ProgressPreference = 'SilentlyContinue'",
  '[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false',
]

/** Starts `program` with the exact argument string, inheriting stdin/stdout/stderr, and exits with its code. */
function startProcess(program: string, args: string[], lines: string[]): void {
  lines.push(
    `$exe = Get-Command -Name ${psQuote(program)} -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1`,
    `if (-not $exe) { [Console]::Error.WriteLine(${psQuote(`crabbox: ${program}: command not found`)}); exit 127 }`,
    '$psi = New-Object System.Diagnostics.ProcessStartInfo',
    '$psi.FileName = $exe.Path',
    `$psi.Arguments = ${psQuote(windowsCommandLine(args))}`,
    '$psi.UseShellExecute = $false',
    '$psi.WorkingDirectory = (Get-Location).Path',
    '$p = [System.Diagnostics.Process]::Start($psi)',
    '$p.WaitForExit()',
    'exit $p.ExitCode',
  )
}

export interface WindowsCommandOptions {
  /** The run's folder on the runner (`C:\crabbox\<lease>\<repo>`). */
  workdir?: string
  /** Create the folder first (the sync's extract); otherwise it must exist. */
  makeWorkdir?: boolean
  env?: Record<string, string>
  /** Run the words as one PowerShell script. */
  shell?: boolean
}

/** A single argument with PowerShell syntax is a script, not a program name. */
const psSyntax = /[\s|&;<>(){}$`'"@#]/

/** The PowerShell script a native Windows run executes (exported for the tests; `windowsRemoteCommand` encodes it). */
export function windowsScript(argv: string[], options: WindowsCommandOptions = {}): { script: string; viaShell: boolean } {
  const lines = [...PRELUDE]
  if (options.workdir && options.makeWorkdir) lines.push(`New-Item -ItemType Directory -Force -Path ${psQuote(options.workdir)} | Out-Null`)
  if (options.workdir) lines.push(`Set-Location -LiteralPath ${psQuote(options.workdir)}`)
  for (const [name, value] of Object.entries(options.env ?? {})) lines.push(`$env:${name} = ${psQuote(value)}`)
  const viaShell = Boolean(options.shell) || (argv.length === 1 && psSyntax.test(argv[0]))
  if (viaShell) {
    lines.push(
      "$ErrorActionPreference = 'Continue'",
      argv.join(' '),
      'if (-not $?) { if ($LASTEXITCODE) { exit $LASTEXITCODE }; exit 1 }',
      'exit $LASTEXITCODE',
    )
  } else {
    startProcess(argv[0], argv.slice(1), lines)
  }
  return { script: `${lines.join('\r\n')}\r\n`, viaShell }
}

export function windowsRemoteCommand(argv: string[], options: WindowsCommandOptions = {}): { command: string; viaShell: boolean } {
  const { script, viaShell } = windowsScript(argv, options)
  return { command: powershellCommand(script), viaShell }
}

/**
 * Runs a Linux `sh` command line inside the WSL2 distribution. The line travels
 * as base64 (letters, digits, `+/=`), so neither PowerShell, the Windows
 * command-line parser nor wsl.exe can change it; bash decodes and evaluates it.
 * Stdin, stdout, stderr and the exit code pass through wsl.exe.
 */
export function wslScript(linuxCommand: string): string {
  const b64 = Buffer.from(linuxCommand, 'utf8').toString('base64')
  const lines = [...PRELUDE]
  startProcess('wsl.exe', ['--exec', 'bash', '-c', `eval "$(printf %s ${b64} | base64 -d)"`], lines)
  return `${lines.join('\r\n')}\r\n`
}

export const wslCommand = (linuxCommand: string): string => powershellCommand(wslScript(linuxCommand))

/** A WSL2 run: the Linux command line of `remoteCommandFor`, in the work folder with the environment, through wsl.exe. */
export function wslRemoteCommand(
  argv: string[],
  options: { workdir?: string; env?: Record<string, string>; shell?: boolean; pidFile?: string } = {},
): { command: string; viaShell: boolean; linux: string } {
  const inner = remoteCommandFor(argv, { shell: options.shell, pidFile: options.pidFile })
  const env = Object.entries(options.env ?? {})
  const linux = [
    ...(options.workdir ? [`cd ${shellQuote(options.workdir)} || exit 1`] : []),
    ...(env.length ? [`export ${env.map(([k, v]) => `${k}=${shellQuote(v)}`).join(' ')}`] : []),
    inner.command,
  ].join('\n')
  return { command: wslCommand(linux), viaShell: inner.viaShell, linux }
}
