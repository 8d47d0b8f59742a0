import { chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli } from '../support/cli.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { sleep } from '../support/fixtures.js'

describe('the connection agent: its folder, and dying mid-command', () => {
  let host: SshHost
  beforeAll(async () => {
    host = await sshHost({ ports: [22] })
  })
  afterAll(async () => {
    await host?.stop()
  })
  const home = () => {
    const made = cliHome()
    made.env = { ...made.env, CRABBOX_SSH_KEY: host.privateKeyPath }
    return made
  }
  const ssh = (h: ReturnType<typeof home>, command: string) =>
    runCli(['ssh', '--provider', 'ssh', '--static-host', host.address, '--', command], { home: h, timeoutMs: 30_000 })

  it('never talks to a socket in a folder another user owns; runs from its own process instead', async () => {
    const h = home()
    const dir = join(h.env.XDG_RUNTIME_DIR, 'crabbox')
    mkdirSync(dir, { recursive: true, mode: 0o777 })
    // Someone else's folder, with a socket posing as the agent that never answers.
    const seen: Socket[] = []
    const impostor = createServer((socket) => seen.push(socket))
    await new Promise<void>((resolve) => impostor.listen(join(dir, 'agent.sock'), resolve))
    chownSync(dir, 65534, 65534)
    try {
      const result = await ssh(h, 'echo direct; exit 4')
      expect(result).toMatchObject({ code: 4, stdout: 'direct\n' })
      expect(result.stderr).toContain('agent unavailable')
      expect(seen).toHaveLength(0)
    } finally {
      for (const socket of seen) socket.destroy()
      await new Promise((resolve) => impostor.close(resolve))
    }
  })

  it('a wedged agent that never answers is given up on: commands connect themselves, status fails instead of hanging', async () => {
    const h = home()
    const dir = join(h.env.XDG_RUNTIME_DIR, 'crabbox')
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const seen: Socket[] = []
    const wedged = createServer((socket) => seen.push(socket))
    await new Promise<void>((resolve) => wedged.listen(join(dir, 'agent.sock'), resolve))
    try {
      const result = await ssh(h, 'echo direct')
      expect(result).toMatchObject({ code: 0, stdout: 'direct\n' })
      expect(result.stderr).toContain('agent unavailable')
      const status = await runCli(['agent', 'status'], { home: h, timeoutMs: 30_000 })
      expect(status.code).toBe(1)
      expect(status.stderr).toContain('did not answer')
    } finally {
      for (const socket of seen) socket.destroy()
      await new Promise((resolve) => wedged.close(resolve))
    }
  })

  it('an agent killed mid-command is a lost transport: exit 255, not 0 and not a hang', async () => {
    const h = home()
    const child = spawnCli(['ssh', '--provider', 'ssh', '--static-host', host.address, '--', 'echo started; sleep 60'], { home: h })
    child.stdin!.end()
    let stdout = ''
    child.stdout!.on('data', (d) => (stdout += d))
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    while (!stdout.includes('started')) await sleep(50)
    const { pid } = JSON.parse((await runCli(['agent', 'status', '--json'], { home: h })).stdout)
    process.kill(pid, 'SIGKILL')
    expect(await exited).toBe(255)
    // Cleanup: without a pty, sshd leaves the orphaned sleep of the lost session running.
    await host.killSessions()
  })

  it('starts although a stale pid file names a pid that another program now uses', async () => {
    const h = home()
    const dir = join(h.env.XDG_RUNTIME_DIR, 'crabbox')
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    writeFileSync(join(dir, 'agent.pid'), String(process.pid)) // alive, but not an agent
    try {
      const result = await ssh(h, 'echo via-agent')
      expect(result).toMatchObject({ code: 0, stdout: 'via-agent\n' })
      expect(result.stderr).not.toContain('agent unavailable')
      const status = JSON.parse((await runCli(['agent', 'status', '--json'], { home: h })).stdout)
      expect(status.running).toBe(true)
      expect(readFileSync(join(dir, 'agent.pid'), 'utf8').trim()).toBe(String(status.pid))
    } finally {
      await runCli(['agent', 'stop'], { home: h })
    }
  })

  it('tightens a folder of ours that others could read to 0700 and uses the agent', async () => {
    const h = home()
    const dir = join(h.env.XDG_RUNTIME_DIR, 'crabbox')
    mkdirSync(dir, { recursive: true, mode: 0o755 })
    try {
      expect(await ssh(h, 'echo via-agent')).toMatchObject({ code: 0, stdout: 'via-agent\n' })
      expect(statSync(dir).mode & 0o777).toBe(0o700)
      expect(JSON.parse((await runCli(['agent', 'status', '--json'], { home: h })).stdout).running).toBe(true)
    } finally {
      await runCli(['agent', 'stop'], { home: h })
    }
  })
})
