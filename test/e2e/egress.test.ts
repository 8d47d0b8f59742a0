import { execFile, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { accessProxy, type AccessProxy } from '../support/access-proxy.js'
import { runCli, spawnCli } from '../support/cli.js'
import { collectOutput, until } from '../support/fixtures.js'
import { freePort } from '../support/broker.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'
import { tcpProxy, type TcpProxy } from '../support/tcp-proxy.js'

/**
 * Mediated egress end to end with real processes: `crabbox broker dev` with a static pool of
 * one sshd test host (its own network namespace) as the lease, `crabbox egress start` here as
 * the operator's machine, and two HTTPS sites on this machine: `localhost` (allowed) and
 * `127.0.0.1` (the same machine under a name the allow-list does not have). `curl` on the test
 * host goes through the lease-side proxy on its loopback 3128. The broker is reached through
 * a TCP proxy on the host's link address (so both halves can reach it, and the test can cut
 * the sockets), and in the last part through a stand-in for Cloudflare Access as well.
 */

const BIG = 24 * 1024 * 1024

/** curl here (the operator's machine), with its exit code. */
const execCurl = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile('curl', ['-sS', '--max-time', '20', ...args], (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  )

interface Site {
  server: Server
  port: number
}

function certificate(dir: string): { key: Buffer; cert: Buffer; certPath: string } {
  const keyPath = join(dir, 'key.pem')
  const certPath = join(dir, 'cert.pem')
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: 'ignore' },
  )
  return { key: readFileSync(keyPath), cert: readFileSync(certPath), certPath }
}

async function site(tls: { key: Buffer; cert: Buffer }, name: string): Promise<Site> {
  const server = createServer(tls, (request, response) => {
    if (request.url === '/big') {
      // Slow enough that the test can cut the broker socket while it streams.
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG) })
      const chunk = Buffer.alloc(64 * 1024, 120)
      let sent = 0
      const pump = () => {
        while (sent < BIG) {
          sent += chunk.length
          if (!response.write(chunk)) return response.once('drain', () => setTimeout(pump, 5))
        }
        response.end()
      }
      pump()
      return
    }
    response.writeHead(200, { 'content-type': 'text/plain' }).end(`hello from the ${name} site\n`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  return { server, port: (server.address() as AddressInfo).port }
}

const rig = brokerWithStaticHosts({ token: 'egress-e2e', owner: 'egress@example.com' })

describe('crabbox egress (broker dev, sshd test host, real curl)', () => {
  let dir: string
  let certPath: string
  let allowedSite: Site
  let forbiddenSite: Site
  let proxy: TcpProxy
  let access: AccessProxy
  let accessFront: TcpProxy
  let leaseId: string
  const running: ChildProcess[] = []

  const coordinator = (front: TcpProxy) => `http://${front.host}:${front.port}`
  const onHost = (command: string) => rig.host.run(command)
  const curl = (url: string, extra = '') =>
    onHost(`curl -sS --max-time 30 --cacert ${certPath} --proxy http://127.0.0.1:3128 ${extra} ${url}`)

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'crabbox-egress-'))
    const tls = certificate(dir)
    certPath = tls.certPath
    allowedSite = await site(tls, 'allowed')
    forbiddenSite = await site(tls, 'forbidden')
    const rootSide = rig.host.address.replace(/\.(\d+)$/, (_m, last: string) => `.${Number(last) - 1}`)
    const broker = new URL(rig.broker.url)
    proxy = await tcpProxy({ host: broker.hostname, port: Number(broker.port) }, { listenHost: rootSide })
    access = await accessProxy(rig.broker.url, { clientId: 'egress-id.access', clientSecret: 'egress-secret' })
    const front = new URL(access.url)
    accessFront = await tcpProxy({ host: front.hostname, port: Number(front.port) }, { listenHost: rootSide })
    const { lease } = await rig.api('POST', '/v1/leases', { provider: 'static', sshPublicKey: rig.host.publicKey })
    leaseId = lease.id
  })

  afterAll(async () => {
    for (const child of running) child.kill('SIGTERM')
    await Promise.all([proxy?.close(), accessFront?.close(), access?.close()])
    allowedSite?.server.close()
    forbiddenSite?.server.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** A start that died fails the wait at once, with its output. */
  function exited(child: ChildProcess, out: { stdout: () => string; stderr: () => string }): false {
    if (child.exitCode !== null) throw new Error(`egress start exited ${child.exitCode}: ${out.stderr()}`)
    return false
  }

  function start(front: TcpProxy, env: Record<string, string> = {}) {
    const child = spawnCli(['egress', 'start', '--id', leaseId, '--allow', 'localhost', '--coordinator', coordinator(front)], {
      home: rig.home,
      env: rig.cliEnv(env),
    })
    running.push(child)
    const out = collectOutput(child)
    return {
      child,
      out,
      ready: until('egress start', () => /lease proxy: http:\/\/127\.0\.0\.1:3128/.test(out.stdout()) || exited(child, out), 90_000),
    }
  }

  async function stop(child: ChildProcess) {
    child.kill('SIGTERM')
    await new Promise((resolve) => child.once('close', resolve))
  }

  it('reaches the allowed site through the bridge and refuses the other one, with the reason and a log line', async () => {
    const egress = start(proxy)
    await egress.ready
    const ok = await curl(`https://localhost:${allowedSite.port}/`)
    expect(ok.stderr).toBe('')
    expect(ok.stdout).toBe('hello from the allowed site\n')

    const refused = await curl(`https://127.0.0.1:${forbiddenSite.port}/`, '-v')
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toMatch(/403/)
    // The proxy's reply itself names the refusal.
    const raw = await onHost(
      `node -e 's = require("net").connect(3128, "127.0.0.1", () => s.write("CONNECT 127.0.0.1:${forbiddenSite.port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")); s.pipe(process.stdout)'`,
    )
    expect(raw.stdout).toMatch(/^HTTP\/1\.1 403 Forbidden/)
    expect(raw.stdout).toContain(`egress: 127.0.0.1:${forbiddenSite.port} is not allowed by this egress session (allow-list: localhost)`)
    expect(egress.out.stderr()).toContain(`egress refused 127.0.0.1:${forbiddenSite.port}: not in the allow-list`)

    const status = await runCli(['egress', 'status', '--id', leaseId, '--coordinator', coordinator(proxy), '--json'], {
      home: rig.home,
      env: rig.cliEnv(),
    })
    expect(status.code).toBe(0)
    const shown = JSON.parse(status.stdout)
    expect(shown.broker).toMatchObject({ leaseID: leaseId, allow: ['localhost'], hostConnected: true, clientConnected: true })
    expect(shown.local).toMatchObject({ running: true, listen: '127.0.0.1:3128' })

    // Cut both broker sockets while a large download streams: that transfer fails, the halves dial again, the next one works.
    const before = proxy.totalConnections
    const big = onHost(
      `curl -sS --max-time 60 --cacert ${certPath} --proxy http://127.0.0.1:3128 -o /dev/null -w '%{size_download}' https://localhost:${allowedSite.port}/big`,
    )
    await until('the download', () => proxy.liveConnections >= 2, 10_000)
    await new Promise((resolve) => setTimeout(resolve, 300))
    proxy.cut()
    const cutShort = await big
    expect(Number(cutShort.stdout)).toBeLessThan(BIG)
    const again = await until(
      'a download after reconnecting',
      async () => {
        const result = await curl(`https://localhost:${allowedSite.port}/big`, `-o /dev/null -w '%{size_download}'`)
        return Number(result.stdout) === BIG ? result : undefined
      },
      90_000,
      500,
    )
    expect(Number(again.stdout)).toBe(BIG)
    expect(proxy.totalConnections).toBeGreaterThanOrEqual(before + 2)
    expect(egress.out.stderr()).toMatch(/reconnecting/)
    await stop(egress.child)
  })

  it('works behind Cloudflare Access only with the Access credentials, on the egress sockets too', async () => {
    const without = await runCli(['egress', 'start', '--id', leaseId, '--allow', 'localhost', '--coordinator', coordinator(accessFront)], {
      home: rig.home,
      env: rig.cliEnv(),
      timeoutMs: 60_000,
    })
    expect(without.code).not.toBe(0)
    expect(without.stderr).toMatch(/Cloudflare Access/)

    const egress = start(accessFront, { CRABBOX_ACCESS_CLIENT_ID: 'egress-id.access', CRABBOX_ACCESS_CLIENT_SECRET: 'egress-secret' })
    await egress.ready
    const ok = await curl(`https://localhost:${allowedSite.port}/`)
    expect(ok.stdout).toBe('hello from the allowed site\n')
    const sockets = access.seen.filter((entry) => entry.upgrade)
    expect(sockets.map((entry) => entry.route)).toEqual(
      expect.arrayContaining([`GET /v1/leases/${leaseId}/egress/host`, `GET /v1/leases/${leaseId}/egress/client`]),
    )
    expect(sockets.every((entry) => entry.allowed)).toBe(true)
    await stop(egress.child)
  })

  it('answers 404 for a lease the caller cannot see', async () => {
    const hidden = await runCli(['egress', 'start', '--id', leaseId, '--allow', 'localhost', '--coordinator', coordinator(proxy)], {
      home: rig.home,
      env: rig.cliEnv({ CRABBOX_OWNER: 'someone-else@example.com' }),
    })
    expect(hidden.code).toBe(4)
    expect(hidden.stderr).toContain(`no active lease ${leaseId}`)
    const open = await runCli(['egress', 'start', '--id', leaseId, '--coordinator', coordinator(proxy)], {
      home: rig.home,
      env: rig.cliEnv(),
    })
    expect(open.code).toBe(2)
    expect(open.stderr).toContain('egress needs --profile or --allow')
  })

  it('runs as a daemon: status shows it, stop ends it and the lease-side proxy with it', async () => {
    const args = ['--id', leaseId, '--coordinator', coordinator(proxy)]
    const started = await runCli(['egress', 'start', ...args, '--allow', 'localhost', '--daemon', '--json'], {
      home: rig.home,
      env: rig.cliEnv(),
      timeoutMs: 120_000,
    })
    expect(started.code).toBe(0)
    const daemon = JSON.parse(started.stdout)
    expect(daemon).toMatchObject({ leaseId, alreadyRunning: false, listen: '127.0.0.1:3128' })
    const ok = await curl(`https://localhost:${allowedSite.port}/`)
    expect(ok.stdout).toBe('hello from the allowed site\n')
    const status = JSON.parse((await runCli(['egress', 'status', ...args, '--json'], { home: rig.home, env: rig.cliEnv() })).stdout)
    expect(status.local).toMatchObject({ running: true, daemon: true, pid: daemon.pid })
    expect(status.broker).toMatchObject({ hostConnected: true, clientConnected: true })
    const stopped = await runCli(['egress', 'stop', ...args, '--json'], { home: rig.home, env: rig.cliEnv() })
    expect(JSON.parse(stopped.stdout)).toEqual({ leaseId, stopped: true })
    await until('the lease-side proxy to stop', async () => (await curl(`https://localhost:${allowedSite.port}/`)).code !== 0, 30_000, 250)
    const after = JSON.parse((await runCli(['egress', 'status', ...args, '--json'], { home: rig.home, env: rig.cliEnv() })).stdout)
    expect(after.local.running).toBe(false)
  })

  it('runs the two halves on their own: egress host and egress client with one session', async () => {
    const port = await freePort()
    const args = ['--id', leaseId, '--coordinator', coordinator(proxy), '--session', 'egress_halves00001']
    const host = spawnCli(['egress', 'host', ...args, '--allow', 'localhost'], { home: rig.home, env: rig.cliEnv() })
    const client = spawnCli(['egress', 'client', ...args, '--listen', `127.0.0.1:${port}`], { home: rig.home, env: rig.cliEnv() })
    running.push(host, client)
    const hostOut = collectOutput(host)
    const clientOut = collectOutput(client)
    await until('both halves', () => /egress host for/.test(hostOut.stdout()) && /egress client for/.test(clientOut.stdout()), 60_000)
    const ok = await until(
      'a request through the local client',
      async () => {
        const result = await execCurl([
          '--cacert',
          certPath,
          '--proxy',
          `http://127.0.0.1:${port}`,
          `https://localhost:${allowedSite.port}/`,
        ])
        return result.code === 0 ? result : undefined
      },
      30_000,
      250,
    )
    expect(ok.stdout).toBe('hello from the allowed site\n')
    await stop(host)
    await stop(client)
  })

  it('ends when the lease is released', async () => {
    const egress = start(proxy)
    await egress.ready
    await rig.api('POST', `/v1/leases/${leaseId}/release`, {})
    const code = await new Promise((resolve) => egress.child.once('close', resolve))
    expect(code).toBe(0)
    expect(egress.out.stderr()).toContain('egress: the lease was released')
  })
})
