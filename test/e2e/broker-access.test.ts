import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { accessProxy, type AccessProxy } from '../support/access-proxy.js'
import { runCli } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

/**
 * A broker behind Cloudflare Access: a loopback proxy in front of `crabbox broker
 * dev` refuses (403, HTML, like Access) every request and WebSocket upgrade
 * without the Access service token. The real Access service is not involved.
 */

const CLIENT_ID = 'e2e-client.access'
const CLIENT_SECRET = 'e2e-access-secret-0123456789'
const rig = brokerWithStaticHosts({ token: 'e2e-access-token', owner: 'access@example.com', names: ['e2e-access'] })
let proxy: AccessProxy
let repo: string

beforeAll(async () => {
  proxy = await accessProxy(rig.broker.url, { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET })
  repo = gitRepo('crabbox-access-', { 'hello.txt': 'hello through access\n' })
})

afterAll(async () => {
  await proxy?.close()
  if (repo) rmSync(repo, { recursive: true, force: true })
})

const env = (extra: Record<string, string | undefined> = {}) => rig.cliEnv({ CRABBOX_COORDINATOR: proxy.url, ...extra })

describe('a broker behind Cloudflare Access', () => {
  it('crabbox run with the service token works end to end, control socket included, every request carrying it', async () => {
    proxy.seen.length = 0
    // The ID by its CF_ alias, the secret by its CRABBOX_ name.
    const result = await runCli(['run', '--', 'sh', '-c', 'sleep 2; cat hello.txt'], {
      home: rig.home,
      cwd: repo,
      env: env({ CF_ACCESS_CLIENT_ID: CLIENT_ID, CRABBOX_ACCESS_CLIENT_SECRET: CLIENT_SECRET }),
      timeoutMs: 90_000,
    })
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toBe('hello through access\n')
    expect(proxy.seen.filter((s) => !s.allowed)).toEqual([])
    const routes = proxy.seen.map((s) => s.route)
    expect(routes).toContain('POST /v1/leases')
    expect(routes.some((r) => /^POST \/v1\/leases\/[^/]+\/release$/.test(r))).toBe(true)
    // The control socket's handshake went through Access too.
    expect(proxy.seen).toContainEqual({ route: 'GET /v1/control', upgrade: true, allowed: true })
    // Nothing is left behind: the lease was released through the proxy.
    const { leases } = await rig.api('GET', '/v1/leases?state=active')
    expect(leases).toEqual([])
  })

  it('without the credentials the CLI fails with exit 3 saying Access credentials are needed and which settings to set', async () => {
    proxy.seen.length = 0
    const result = await runCli(['run', '--', 'true'], { home: rig.home, cwd: repo, env: env(), timeoutMs: 60_000 })
    expect(result.code).toBe(3)
    expect(result.stderr).toContain('Access credentials are needed')
    expect(result.stderr).toContain('broker.access.clientId')
    expect(result.stderr).toContain('CRABBOX_ACCESS_TOKEN')
    expect(proxy.seen.length).toBeGreaterThan(0)
    expect(proxy.seen.every((s) => !s.allowed)).toBe(true)
  })

  it('config show and doctor say the service token is set without printing it', async () => {
    const creds = { CRABBOX_ACCESS_CLIENT_ID: CLIENT_ID, CRABBOX_ACCESS_CLIENT_SECRET: CLIENT_SECRET }
    const show = await runCli(['config', 'show', '--json'], { home: rig.home, cwd: repo, env: env(creds) })
    expect(show.code, show.stderr).toBe(0)
    const view = JSON.parse(show.stdout)
    expect(view.accessAuth).toBe('service-token')
    expect(view.config.broker.access).toEqual({ clientId: 'set', clientSecret: 'set', token: 'missing' })
    expect(show.stdout).not.toContain(CLIENT_SECRET)
    const text = await runCli(['config', 'show'], { home: rig.home, cwd: repo, env: env(creds) })
    expect(text.stdout).toContain('cloudflare access: service-token')
    expect(text.stdout).not.toContain(CLIENT_SECRET)

    const doctor = await runCli(['doctor'], { home: rig.home, cwd: repo, env: env(creds), timeoutMs: 60_000 })
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0)
    expect(doctor.stdout).toMatch(/^ok\s+broker access\s+Cloudflare Access credentials set \(service-token\)$/m)
    // Health and login went through the proxy with the credentials.
    expect(doctor.stdout).toMatch(/^ok\s+broker\s+http:\/\/127\.0\.0\.1:\d+ /m)
    expect(doctor.stdout).toMatch(/^ok\s+broker login\s+user=access@example\.com/m)
    expect(doctor.stdout + doctor.stderr).not.toContain(CLIENT_SECRET)

    const half = await runCli(['doctor'], {
      home: rig.home,
      cwd: repo,
      env: env({ CRABBOX_ACCESS_CLIENT_ID: CLIENT_ID }),
      timeoutMs: 60_000,
    })
    expect(half.code).not.toBe(0)
    expect(half.stdout + half.stderr).toContain('service token is incomplete')
  })
})
