import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import ssh2 from 'ssh2'
import { generateEd25519Pair } from '../../src/transport/ssh/keys.js'
import { parseWindowsArgs, psUnquote } from './powershell.js'

/**
 * A stand-in "Windows" SSH server (ssh2) for the tests: no Windows here, and
 * no PowerShell. It answers the way Windows OpenSSH would for what crabbox
 * sends: every exec string must be one `powershell.exe … -EncodedCommand`
 * line (cmd.exe's refusal otherwise); the script is decoded and recorded with
 * the stdin it got, then answered by what it does:
 *
 * - the bootstrap (on stdin): prints `crabbox-bootstrap: ready`, or in WSL2
 *   mode first `crabbox-bootstrap: restart` and drops every connection, as a
 *   restart would; the ready script passes only after the bootstrap;
 * - `tar.exe -x[z]f -`: extracts the stream with this machine's tar into the
 *   folder the script names, mapped under a temp root (`C:\x` → `<root>/C/x`);
 * - any other program: started here with the argument string parsed by the
 *   Windows C runtime's rules, in the mapped folder, with the script's
 *   `$env:` values; its output and exit code go back;
 * - `wsl.exe --exec bash -c …`: the base64 Linux command is decoded, recorded,
 *   and run by this machine's bash with `/work/crabbox` mapped under the root.
 */

export interface WindowsExec {
  command: string
  /** The decoded PowerShell script. */
  script: string
  stdin: Buffer
  /** What the script does, as the stand-in read it. */
  kind: 'bootstrap' | 'ready' | 'probe' | 'tools' | 'program' | 'wsl' | 'unknown'
  program?: string
  args?: string[]
  /** The Linux command a `wsl.exe` line carried. */
  linux?: string
  /** `Set-Location -LiteralPath` (the run's folder). */
  folder?: string
  env?: Record<string, string>
}

export interface WindowsHost {
  port: number
  /** Where `C:\` and WSL2's `/work/crabbox` live on this machine. */
  root: string
  execs: WindowsExec[]
  /** Connections made so far (a restart drops them all). */
  connections: number
  bootstrapRuns: number
  /** The user names clients authenticated as. */
  users: string[]
  authorize(publicKey: string): void
  /** `C:\crabbox\…` as the local path the stand-in uses for it. */
  local(windowsPath: string): string
  stop(): Promise<void>
}

/** How crabbox stages a long WSL2 command: its text on stdin into a file under /tmp. */
const staging = /^umask 077 && cat > \/tmp\/crabbox-wsl-[0-9a-f]+\.sh$/

const PREFIX = 'powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand '

/** The first single-quoted PowerShell value after `before`, or undefined. */
function quotedAfter(script: string, before: string): string | undefined {
  const at = script.indexOf(before)
  return at === -1 ? undefined : psUnquote(script, at + before.length)
}

function readEnv(script: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const match of script.matchAll(/^\$env:([A-Za-z_][A-Za-z0-9_]*) = /gm))
    env[match[1]] = psUnquote(script, match.index + match[0].length)
  return env
}

export function classify(command: string, stdin: Buffer): WindowsExec {
  const base: WindowsExec = { command, script: '', stdin, kind: 'unknown' }
  if (!command.startsWith(PREFIX)) return base
  const script = Buffer.from(command.slice(PREFIX.length), 'base64').toString('utf16le')
  const exec: WindowsExec = { ...base, script }
  if (script.includes('[Console]::In.ReadToEnd()'))
    return { ...exec, kind: stdin.toString().includes('crabbox-bootstrap: ready') ? 'bootstrap' : 'unknown' }
  if (script.includes('crabbox-ready.ps1')) return { ...exec, kind: 'ready' }
  if (/Get-Command tar\.exe/.test(script)) return { ...exec, kind: 'tools' }
  if (script.trim() === 'exit 0') return { ...exec, kind: 'probe' }
  const program = quotedAfter(script, 'Get-Command -Name ')
  const argString = quotedAfter(script, '$psi.Arguments = ')
  if (program === undefined || argString === undefined) return exec
  const args = parseWindowsArgs(argString)
  const folder = quotedAfter(script, 'Set-Location -LiteralPath ')
  const env = readEnv(script)
  if (program === 'wsl.exe') {
    const b64 = /printf %s ([A-Za-z0-9+/=]+) \| base64 -d/.exec(args[3] ?? '')?.[1]
    return { ...exec, kind: 'wsl', program, args, linux: b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8') }
  }
  return { ...exec, kind: 'program', program, args, folder, env }
}

// eslint-disable-next-line max-lines-per-function -- one server: auth, exec dispatch and the canned answers read best together
export async function windowsHost(
  options: {
    mode?: 'normal' | 'wsl2'
    /** The bootstrap fails the way a failed step would: PowerShell's error on stderr, exit 1. */
    bootstrapFails?: string
  } = {},
): Promise<WindowsHost> {
  const root = mkdtempSync(join(tmpdir(), 'crabbox-windows-standin-'))
  const hostKey = await generateEd25519Pair()
  const allowed: ssh2.ParsedKey[] = []
  let bootstrapped = false
  let restarted = false
  const clients = new Set<ssh2.Connection>()
  const local = (windowsPath: string) => join(root, windowsPath.replace(/^([A-Za-z]):\\?/, '$1/').replaceAll('\\', '/'))
  const wslLocal = (linux: string) => linux.replaceAll('/work/crabbox', join(root, 'wsl/work/crabbox'))

  const host: WindowsHost = {
    port: 0,
    root,
    execs: [],
    connections: 0,
    bootstrapRuns: 0,
    users: [],
    authorize(publicKey) {
      const key = ssh2.utils.parseKey(publicKey)
      if (key instanceof Error) throw key
      allowed.push(key)
    },
    local,
    async stop() {
      for (const client of clients) client.end()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      rmSync(root, { recursive: true, force: true })
    },
  }

  type Stream = ssh2.ServerChannel
  const finish = (stream: Stream, code: number, out = '', err = '') => {
    if (out) stream.write(out)
    if (err) stream.stderr.write(err)
    stream.exit(code)
    stream.end()
  }
  const run = (stream: Stream, file: string, args: string[], cwd: string, env: Record<string, string>, input: Buffer) => {
    mkdirSync(cwd, { recursive: true })
    const child = spawn(file, args, { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    child.stdout.on('data', (chunk: Buffer) => stream.write(chunk))
    child.stderr.on('data', (chunk: Buffer) => stream.stderr.write(chunk))
    child.on('error', (error) => finish(stream, 127, '', `${error.message}\r\n`))
    child.on('close', (code) => finish(stream, code ?? 1))
    // A program that never reads its stdin (most commands) closes the pipe first.
    child.stdin.on('error', () => {})
    child.stdin.end(input)
  }

  const answer = (client: ssh2.Connection, stream: Stream, exec: WindowsExec) => {
    switch (exec.kind) {
      case 'probe':
      case 'tools':
        return finish(stream, 0)
      case 'ready':
        return bootstrapped ? finish(stream, 0) : finish(stream, 1, 'missing: work root\r\n')
      case 'bootstrap':
        host.bootstrapRuns++
        if (options.bootstrapFails) return finish(stream, 1, '', `${options.bootstrapFails}\r\n`)
        if (options.mode === 'wsl2' && !restarted) {
          restarted = true
          stream.write('crabbox-bootstrap: restart\r\n')
          // Restart-Computer: every connection drops before an exit status is sent.
          setTimeout(() => {
            for (const each of clients) each.end()
          }, 50)
          return
        }
        bootstrapped = true
        mkdirSync(local('C:\\crabbox'), { recursive: true })
        return finish(stream, 0, 'crabbox-bootstrap: ready\r\n')
      case 'wsl':
        if (exec.linux === undefined) return finish(stream, 1, '', 'wsl.exe: bad arguments\r\n')
        // A command staged in a file (too long for cmd.exe) arrives on stdin: its paths are mapped too.
        return run(
          stream,
          'bash',
          ['-c', wslLocal(exec.linux)],
          root,
          {},
          staging.test(exec.linux) ? Buffer.from(wslLocal(exec.stdin.toString())) : exec.stdin,
        )
      case 'program': {
        const cwd = exec.folder ? local(exec.folder) : root
        if (exec.program === 'tar.exe') return run(stream, 'tar', [...exec.args!, '-C', cwd], cwd, {}, exec.stdin)
        return run(stream, exec.program!, exec.args!, cwd, exec.env ?? {}, exec.stdin)
      }
      default:
        void client
        return finish(stream, 1, '', `'${exec.command.split(' ')[0]}' is not recognized as an internal or external command\r\n`)
    }
  }

  const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    host.connections++
    clients.add(client)
    client.on('close', () => clients.delete(client))
    client.on('error', () => clients.delete(client))
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey'])
      const key = allowed.find((k) => k.type === ctx.key.algo && k.getPublicSSH().equals(ctx.key.data))
      if (!key) return ctx.reject()
      if (ctx.signature && !key.verify(ctx.blob!, ctx.signature, ctx.hashAlgo)) return ctx.reject()
      if (!host.users.includes(ctx.username)) host.users.push(ctx.username)
      ctx.accept()
    })
    client.on('ready', () =>
      client.on('session', (accept) => {
        const session = accept()
        session.on('exec', (acceptExec, _reject, info) => {
          const stream = acceptExec()
          const chunks: Buffer[] = []
          // Programs get their stdin as it arrives at the end; the bootstrap and tar read it whole.
          stream.on('data', (chunk: Buffer) => chunks.push(chunk))
          stream.on('end', () => {
            const exec = classify(info.command, Buffer.concat(chunks))
            host.execs.push(exec)
            answer(client, stream, exec)
          })
        })
      }),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  host.port = (server.address() as AddressInfo).port
  return host
}
