/**
 * A stand-in for Daytona's SSH gateway: an ssh2 server on loopback that lets in a user whose
 * name is a live SSH access token ("none" authentication, no key), and runs each exec request
 * for real here (`sh -c` in its own process group): stdin, stdout, stderr and the exit status
 * travel over the channel; a signal request or a closed channel kills the process group.
 */
import { spawn } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import ssh2 from 'ssh2'
import { generateEd25519Pair } from '../../src/transport/ssh/keys.js'

export interface FakeGateway {
  port: number
  /** Tokens that reached the gateway, in order (rejected ones too). */
  logins: string[]
  /** The commands run, in order. */
  commands: string[]
  close(): Promise<void>
}

export async function startFakeGateway(isLive: (token: string) => boolean): Promise<FakeGateway> {
  const hostKey = (await generateEd25519Pair()).private
  const logins: string[] = []
  const commands: string[] = []
  const kills = new Set<() => void>()
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (client) => {
    client.on('error', () => {})
    client.on('authentication', (ctx) => {
      logins.push(ctx.username)
      // Only "none" with a live token; a key or password is never what the gateway wants.
      if (ctx.method === 'none' && isLive(ctx.username)) ctx.accept()
      else ctx.reject(['none'])
    })
    client.on('session', (accept) => {
      const session = accept()
      session.on('exec', (acceptExec, _reject, info) => {
        const channel = acceptExec()
        commands.push(info.command)
        const child = spawn('sh', ['-c', info.command], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] })
        const killGroup = () => {
          try {
            if (child.pid && child.exitCode === null) process.kill(-child.pid, 'SIGKILL')
          } catch {
            // already gone
          }
        }
        kills.add(killGroup)
        channel.pipe(child.stdin!).on('error', () => {})
        child.stdout!.pipe(channel, { end: false })
        child.stderr!.pipe(channel.stderr, { end: false })
        session.on('signal', killGroup)
        channel.on('close', killGroup)
        child.on('close', (code, signal) => {
          kills.delete(killGroup)
          if (signal) channel.exit(signal.replace(/^SIG/, ''), false, '')
          else channel.exit(code ?? 1)
          channel.end()
        })
      })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    logins,
    commands,
    async close() {
      for (const kill of kills) kill()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
