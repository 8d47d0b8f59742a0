import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { Client } from 'ssh2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { repoRoot } from '../support/cli.js'
import { sshHost, sweepStaleHosts, type SshHost } from '../support/ssh-host.js'
import { sleep } from '../support/fixtures.js'
import { tcpProxy, type TcpProxy } from '../support/tcp-proxy.js'

interface Connected {
  client: Client
  fingerprint: string
  closed: Promise<string>
}

/** Connects with ssh2 and records the host key it was shown (as OpenSSH's SHA256 fingerprint). */
function connectSsh(host: SshHost, target: { host: string; port: number }): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const client = new Client()
    let fingerprint = ''
    const closed = new Promise<string>((resolveClosed) => {
      client.on('error', (error) => resolveClosed(`error: ${error.message}`))
      client.on('close', () => resolveClosed('close'))
    })
    client.once('ready', () => resolve({ client, fingerprint, closed }))
    client.once('error', reject)
    client.connect({
      host: target.host,
      port: target.port,
      username: host.user,
      privateKey: readFileSync(host.privateKeyPath),
      readyTimeout: 20_000,
      hostVerifier: (key: Buffer) => {
        fingerprint = `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`
        return true
      },
    })
  })
}

function execSsh(client: Client, command: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    client.exec(command, (error, channel) => {
      if (error) return reject(error)
      let stdout = ''
      let code = -1
      channel.on('data', (d: Buffer) => (stdout += d.toString()))
      channel.stderr.resume()
      channel.on('exit', (c: number) => (code = c))
      channel.on('close', () => resolve({ code, stdout }))
    })
  })
}

async function roundTrip(client: Client): Promise<number> {
  const start = performance.now()
  await execSsh(client, 'true')
  return performance.now() - start
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

describe('sshHost', () => {
  let host: SshHost
  beforeAll(async () => {
    host = await sshHost({ ports: [22, 2222], name: 'support' })
  })
  afterAll(async () => {
    await host?.stop()
  })

  it('runs commands as the runner user in a per-host home, on every port', async () => {
    for (const port of host.ports) {
      const { client } = await connectSsh(host, { host: host.address, port })
      const result = await execSsh(client, 'id -un; echo "$HOME"; pwd; touch probe && echo ok')
      client.end()
      expect(result.code).toBe(0)
      expect(result.stdout.split('\n')).toEqual([host.user, host.home, host.home, 'ok', ''])
    }
    expect((await host.run(`stat -c %U ${host.home}/probe; id -un`)).stdout).toBe(`${host.user}\nroot\n`)
  })

  it('shows ssh2 the advertised host key, and a new one after restart with new host keys', async () => {
    const first = await connectSsh(host, { host: host.address, port: 22 })
    first.client.end()
    expect(first.fingerprint).toBe(host.hostKeyFingerprint)

    const before = host.hostKeyFingerprint
    await host.restart({ newHostKeys: true, ports: [22, 2200] })
    expect(host.hostKeyFingerprint).not.toBe(before)
    expect(host.ports).toEqual([22, 2200])
    const second = await connectSsh(host, { host: host.address, port: 2200 })
    second.client.end()
    expect(second.fingerprint).toBe(host.hostKeyFingerprint)
  })

  it('authorizes extra keys', async () => {
    const other = await sshHost()
    try {
      // The other host's client key is unknown here until authorized.
      const foreign = { ...host, privateKeyPath: other.privateKeyPath }
      await expect(connectSsh(foreign, { host: host.address, port: 22 })).rejects.toThrow(/authentication/i)
      await host.authorize(other.publicKey)
      const { client } = await connectSsh(foreign, { host: host.address, port: 22 })
      client.end()
    } finally {
      await other.stop()
    }
  })

  it("processes(), killSessions() and privateDirs stay within one host; another host's sessions live on", async () => {
    const other = await sshHost({ privateDirs: ['/usr/local/bin'] })
    try {
      const mine = await connectSsh(host, { host: host.address, port: 22 })
      const theirs = await connectSsh(other, { host: other.address, port: 22 })
      void execSsh(mine.client, 'sleep 300.4242')
      void execSsh(theirs.client, 'sleep 300.4343')
      const sees = async (h: SshHost, pattern: string) => (await h.processes()).some((p) => p.command.includes(pattern))
      for (let i = 0; i < 100 && !((await sees(host, '300.4242')) && (await sees(other, '300.4343'))); i++) await sleep(50)
      expect(await sees(host, '300.4242')).toBe(true)
      expect(await sees(host, '300.4343')).toBe(false)

      await other.killSessions()
      expect(await theirs.closed).toMatch(/close|error/)
      expect(await sees(other, '300.4343')).toBe(false)
      expect(await sees(host, '300.4242')).toBe(true)
      expect((await execSsh(mine.client, 'echo alive')).stdout).toBe('alive\n')
      mine.client.end()

      // The private /usr/local/bin is what the host's sessions and run() see; the machine's is untouched.
      writeFileSync(other.path('/usr/local/bin/crabbox-probe'), '#!/bin/sh\necho private\n', { mode: 0o755 })
      expect(existsSync('/usr/local/bin/crabbox-probe')).toBe(false)
      expect((await other.run('/usr/local/bin/crabbox-probe')).stdout).toBe('private\n')
      const again = await connectSsh(other, { host: other.address, port: 22 })
      expect((await execSsh(again.client, '/usr/local/bin/crabbox-probe')).stdout).toBe('private\n')
      again.client.end()
    } finally {
      await other.stop()
    }
  })

  it('another test process setting up its hosts leaves the live hosts their per-host home', async () => {
    const script = join(mkdtempSync(join(tmpdir(), 'crabbox-other-')), 'other.mts')
    writeFileSync(
      script,
      `import { sshHost } from ${JSON.stringify(join(repoRoot, 'test/support/ssh-host.ts'))}
const host = await sshHost()
await host.stop()
`,
    )
    const result = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: repoRoot, encoding: 'utf8' })
    expect(result.status, result.stderr).toBe(0)
    const { client } = await connectSsh(host, { host: host.address, port: host.ports[0] })
    const after = await execSsh(client, 'echo "$HOME"')
    client.end()
    expect(after.stdout).toBe(`${host.home}\n`)
  })

  it('stop() removes the namespace, the home and sshd, and can be repeated', async () => {
    const extra = await sshHost()
    await extra.stop()
    await extra.stop()
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(extra.name)
    expect(existsSync(extra.home)).toBe(false)
    expect(existsSync(extra.privateKeyPath)).toBe(false)
  })
})

describe('sshHost leftovers', () => {
  it('a host left behind by a killed process is swept: namespace, sshd and home are gone', async () => {
    const script = join(mkdtempSync(join(tmpdir(), 'crabbox-leak-')), 'leak.mts')
    writeFileSync(
      script,
      `import { sshHost } from ${JSON.stringify(join(repoRoot, 'test/support/ssh-host.ts'))}
const host = await sshHost()
process.stdout.write(JSON.stringify({ name: host.name, home: host.home }))
process.kill(process.pid, 'SIGKILL')
`,
    )
    const result = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: repoRoot, encoding: 'utf8' })
    expect(result.signal).toBe('SIGKILL')
    const leaked = JSON.parse(result.stdout) as { name: string; home: string }
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).toContain(leaked.name)
    expect(execFileSync('ip', ['netns', 'pids', leaked.name], { encoding: 'utf8' }).trim()).not.toBe('')

    sweepStaleHosts()
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(leaked.name)
    expect(existsSync(leaked.home)).toBe(false)
  })
})

describe('tcpProxy in front of sshHost', () => {
  let host: SshHost
  let proxy: TcpProxy
  beforeAll(async () => {
    host = await sshHost()
    proxy = await tcpProxy({ host: host.address, port: 22 })
  })
  afterAll(async () => {
    await proxy?.close()
    await host?.stop()
  })

  it('adds the configured delay to every round trip of a live connection', async () => {
    const { client } = await connectSsh(host, proxy)
    try {
      await roundTrip(client)
      const fast = median([await roundTrip(client), await roundTrip(client), await roundTrip(client)])
      proxy.setDelay(100)
      const slow = median([await roundTrip(client), await roundTrip(client), await roundTrip(client)])
      // An exec is at least one full round trip, and each round trip now carries 2 * 100 ms.
      expect(slow - fast).toBeGreaterThanOrEqual(200)
      // Lowering the delay mid-stream must not reorder bytes already held back.
      const expected = execFileSync('sh', ['-c', 'seq 1 200000'], { encoding: 'utf8', maxBuffer: 16 << 20 })
      const streamed = execSsh(client, 'seq 1 200000')
      setTimeout(() => proxy.setDelay(0), 150)
      expect((await streamed).stdout === expected).toBe(true)
    } finally {
      proxy.setDelay(0)
      client.end()
    }
  })

  it('cut() breaks a live connection and the client sees it', async () => {
    const { closed } = await connectSsh(host, proxy)
    expect(proxy.liveConnections).toBe(1)
    proxy.cut()
    expect(await closed).toMatch(/^(close|error)/)
    expect(proxy.liveConnections).toBe(0)
  })

  it('refuse(true) makes new connections fail until turned off', async () => {
    const before = proxy.totalConnections
    proxy.refuse(true)
    await expect(connectSsh(host, proxy)).rejects.toThrow()
    proxy.refuse(false)
    const { client } = await connectSsh(host, proxy)
    client.end()
    expect(proxy.totalConnections).toBe(before + 2)
  })
})
