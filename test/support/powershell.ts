import { expect } from 'vitest'

/** Helpers that read back what crabbox sends a Windows runner: the encoded PowerShell and the Windows argument string. */

const QUOTES = "'\u2018\u2019\u201a\u201b"

/** Decodes the exec string's `-EncodedCommand` value back to the PowerShell script (base64 of UTF-16LE). */
export function decodeCommand(command: string): string {
  const match = /^powershell\.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ([A-Za-z0-9+/=]+)$/.exec(
    command,
  )
  expect(match, command).not.toBeNull()
  return Buffer.from(match![1], 'base64').toString('utf16le')
}

/** Reads a PowerShell single-quoted string starting at `text[start]` (a doubled quote is one quote). */
export function psUnquote(text: string, start: number): string {
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
export function parseWindowsArgs(line: string): string[] {
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
export function startedWith(script: string): { program: string; args: string[] } {
  const program = /Get-Command -Name (')/.exec(script)
  const args = /\$psi\.Arguments = (')/.exec(script)
  expect(program && args, script).toBeTruthy()
  return {
    program: psUnquote(script, program!.index + program![0].length - 1),
    args: parseWindowsArgs(psUnquote(script, args!.index + args![0].length - 1)),
  }
}
