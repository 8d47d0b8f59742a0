import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { repoRoot } from '../support/cli.js'
import { sleep } from '../support/fixtures.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { tcpProxy, type TcpProxy } from '../support/tcp-proxy.js'
import type * as SshTransport from '../../src/transport/ssh/index.js'
import type { SshSession, SshTarget } from '../../src/transport/ssh/types.js'

// The built transport (the run's private package copy when there is one): its agent client
// starts dist/agent-main.js, as the CLI does.
const built = () =>
  import(join(process.env.CRABBOX_E2E_PACKAGE ?? repoRoot, 'dist', 'transport', 'ssh', 'index.js')) as Promise<typeof SshTransport>
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex')

/** Runs `sha256sum` remotely on what `child` prints: what a caller piping `git bundle create -` does. */
async function digestOf(session: SshSession, child: ChildProcess): Promise<{ code: number | null; digest: string }> {
  let out = ''
  const result = await session.exec('sha256sum', { stdin: child.stdout!, onStdout: (c) => (out += c.toString()) })
  return { code: result.code, digest: out.split(' ')[0] }
}

describe('exec over a real sshd: stdin from a child process, Ctrl-C that the server ignores', () => {
  let host: SshHost
  let proxy: TcpProxy
  let dir: string
  let small: Buffer
  let large: Buffer
  const saved = process.env.XDG_RUNTIME_DIR
  const target = (): SshTarget => ({
    host: proxy.host,
    port: proxy.port,
    fallbackPorts: [],
    user: host.user,
    privateKeyPath: host.privateKeyPath,
    knownHostsPath: join(mkdtempSync(join(dir, 'kh-')), 'known_hosts'),
  })
  const cat = (file: string) => spawn('cat', [file], { stdio: ['ignore', 'pipe', 'ignore'] })

  beforeAll(async () => {
    host = await sshHost({ ports: [22] })
    // A little latency: the channel open then takes longer than `cat` needs to finish.
    proxy = await tcpProxy({ host: host.address, port: 22 })
    proxy.setDelay(15)
    dir = mkdtempSync(join(tmpdir(), 'crabbox-stdin-'))
    small = randomBytes(40 * 1024) // fits the pipe: cat exits before anyone reads
    large = randomBytes(3 * 1024 * 1024) // cat blocks until the transport reads
    writeFileSync(join(dir, 'small'), small)
    writeFileSync(join(dir, 'large'), large)
    process.env.XDG_RUNTIME_DIR = join(dir, 'run')
  })
  afterAll(async () => {
    const { agentStop } = await import('../../src/transport/ssh/agent-client.js')
    await agentStop().catch(() => false)
    if (saved === undefined) delete process.env.XDG_RUNTIME_DIR
    else process.env.XDG_RUNTIME_DIR = saved
    await proxy?.close()
    await host?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('arrives whole in-process, even when the child exits before the channel is open', async () => {
    const { openSession } = await built()
    const session = await openSession(target(), { useAgent: false })
    try {
      for (let i = 0; i < 4; i++) {
        expect(await digestOf(session, cat(join(dir, 'small')))).toEqual({ code: 0, digest: sha(small) })
        expect(await digestOf(session, cat(join(dir, 'large')))).toEqual({ code: 0, digest: sha(large) })
      }
    } finally {
      await session.close()
    }
  })

  it('Ctrl-C gives up waiting after the grace periods when the server refuses signals (forced-command key)', async () => {
    // sshd refuses signal requests for forced-command sessions and keeps the channel until
    // the command ends: before, Ctrl-C then waited for the whole remote command.
    const key = join(dir, 'forced')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    await host.authorize(`command="eval \\"$SSH_ORIGINAL_COMMAND\\"" ${readFileSync(`${key}.pub`, 'utf8').trim()}`)
    const { openSession } = await built()
    const session = await openSession({ ...target(), host: host.address, port: 22, privateKeyPath: key }, { useAgent: false })
    const marker = `300.${process.pid}${Date.now() % 1_000_000}`
    try {
      const abort = new AbortController()
      let started = false
      const outcome = session.exec(`echo started; sleep ${marker}`, { stdin: '', signal: abort.signal, onStdout: () => (started = true) })
      while (!started) await sleep(50)
      abort.abort('SIGINT')
      expect(await outcome).toEqual({ code: null, signal: 'SIGINT' })
    } finally {
      await session.close()
      await host.run(`pkill -f 'slee[p] ${marker}'`)
    }
  })

  it('Ctrl-C while the channel is still opening stops the command instead of letting it run, in-process and through the agent', async () => {
    const { openSession } = await built()
    const ways = [{ useAgent: false }, { useAgent: true }, { useAgent: true, connectWithExec: true }]
    for (const way of ways) {
      const session = await openSession(target(), way)
      proxy.setDelay(300) // each round trip now takes 600 ms: the abort lands before the exec reply
      try {
        const abort = new AbortController()
        let out = ''
        const outcome = session.exec('sleep 2; echo finished', { signal: abort.signal, onStdout: (c) => (out += c) })
        await sleep(100)
        abort.abort('SIGINT')
        expect(await outcome).toEqual({ code: null, signal: 'SIGINT' })
        expect(out).toBe('')
      } finally {
        proxy.setDelay(15)
        await session.close()
      }
    }
  })

  it('arrives whole through the agent, also when the agent has to start again for the exec', async () => {
    const { openSession } = await built()
    const { agentStop } = await import('../../src/transport/ssh/agent-client.js')
    const session = await openSession(target(), { useAgent: true })
    try {
      for (let i = 0; i < 3; i++) {
        expect(await digestOf(session, cat(join(dir, 'small')))).toEqual({ code: 0, digest: sha(small) })
        expect(await digestOf(session, cat(join(dir, 'large')))).toEqual({ code: 0, digest: sha(large) })
        // The agent went away on idle between two commands: this exec waits for a new one.
        expect(await agentStop()).toBe(true)
        await sleep(50)
        expect(await digestOf(session, cat(join(dir, 'small')))).toEqual({ code: 0, digest: sha(small) })
      }
    } finally {
      await session.close()
    }
  })

  it('arrives whole through one connect-exec request per command, a cold connection and a restarted agent too', async () => {
    const { openSession } = await built()
    const { agentStop } = await import('../../src/transport/ssh/agent-client.js')
    for (let i = 0; i < 2; i++) {
      // A new known_hosts each time: the agent connects for the first exec.
      const session = await openSession(target(), { useAgent: true, connectWithExec: true })
      try {
        expect(session.port).toBeUndefined()
        expect(await digestOf(session, cat(join(dir, 'large')))).toEqual({ code: 0, digest: sha(large) })
        expect(session.port).toBe(proxy.port)
        expect(await digestOf(session, cat(join(dir, 'small')))).toEqual({ code: 0, digest: sha(small) })
        expect(await agentStop()).toBe(true)
        await sleep(50)
        expect(await digestOf(session, cat(join(dir, 'small')))).toEqual({ code: 0, digest: sha(small) })
      } finally {
        await session.close()
      }
    }
  })
})
