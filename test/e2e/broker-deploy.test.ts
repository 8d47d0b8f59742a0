import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { cliHome, cliPath, runCli } from '../support/cli.js'
import { fakeWrangler, type FakeWrangler } from '../support/fake-wrangler.js'

const secret = 'shared-secret-value-9d1f'
const home = cliHome()
const scratch = mkdtempSync(join(tmpdir(), 'crabbox-deploy-test-'))
let health: Server
let healthUrl = ''
let healthHits = 0

beforeAll(async () => {
  health = createServer((request, response) => {
    if (request.url === '/v1/health') healthHits++
    response.writeHead(request.url === '/v1/health' ? 200 : 404, { 'content-type': 'application/json' })
    response.end(JSON.stringify({ ok: true, service: 'crabbox-coordinator' }))
  })
  await new Promise<void>((resolve) => health.listen(0, '127.0.0.1', resolve))
  const address = health.address()
  healthUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
})
afterAll(() => {
  health?.close()
  rmSync(home.dir, { recursive: true, force: true })
  rmSync(scratch, { recursive: true, force: true })
})

function envFile(lines: Record<string, string>): string {
  const file = join(mkdtempSync(join(scratch, 'env-')), 'broker.env')
  writeFileSync(
    file,
    Object.entries(lines)
      .map(([key, value]) => `${key}='${value}'\n`)
      .join(''),
  )
  return file
}

const staticPool = JSON.stringify([{ name: 'box1', host: '10.0.0.5', port: 22, user: 'crabbox' }])

describe('broker deploy --dry-run', () => {
  it('builds the bundle offline (no network namespace) and prints what would be deployed, without values', () => {
    const file = envFile({
      CRABBOX_PUBLIC_URL: 'https://crabbox.example.com',
      CRABBOX_SHARED_TOKEN: secret,
      CRABBOX_STATIC_POOL: staticPool,
    })
    // unshare -n: a fresh network namespace with nothing but a down loopback.
    const result = spawnSync(
      'unshare',
      ['-n', process.execPath, cliPath, 'broker', 'deploy', '--dry-run', '--env-file', file, '--name', 'crabbox-test'],
      {
        cwd: scratch,
        env: { PATH: process.env.PATH, ...home.env },
        encoding: 'utf8',
        timeout: 120_000,
      },
    )
    expect(result.status, result.stderr).toBe(0)
    expect(result.stdout).toContain('would deploy worker=crabbox-test url=https://crabbox.example.com')
    expect(result.stdout).toContain('providers: static')
    expect(result.stdout).toContain('secrets (3): CRABBOX_PUBLIC_URL CRABBOX_SHARED_TOKEN CRABBOX_STATIC_POOL')
    expect(result.stdout).toMatch(/^ {2}index\.js \d+ bytes$/m)
    expect(result.stdout).toContain('users would log in with: crabbox login --url https://crabbox.example.com')
    expect(result.stdout + result.stderr).not.toContain(secret)
  })

  it('refuses settings that make no usable broker, listing each problem (exit 3)', async () => {
    const file = envFile({
      CRABBOX_PUBLIC_URL: 'ftp://x',
      CRABBOX_GITHUB_CLIENT_ID: 'id',
      CRABBOX_DEFAULT_PROVIDER: 'hetzner',
      CRABBOX_AWS_REGION: 'eu-west-1',
    })
    const result = await runCli(['broker', 'deploy', '--dry-run', '--env-file', file], { home, cwd: scratch })
    expect(result.code).toBe(3)
    for (const problem of [
      'CRABBOX_PUBLIC_URL=ftp://x is not an https:// URL',
      'GitHub login needs CRABBOX_GITHUB_CLIENT_SECRET',
      'GitHub login needs CRABBOX_SESSION_SECRET',
      'the hetzner provider needs CRABBOX_HETZNER_TOKEN',
      'the aws provider needs CRABBOX_AWS_ACCESS_KEY_ID',
      'the aws provider needs CRABBOX_AWS_SECRET_ACCESS_KEY',
    ])
      expect(result.stderr).toContain(problem)
  })
})

describe('broker deploy against a stand-in wrangler', () => {
  let wrangler: FakeWrangler
  beforeEach(() => {
    wrangler = fakeWrangler()
    healthHits = 0
  })
  afterAll(() => rmSync(wrangler.dir, { recursive: true, force: true }))

  const settings = () => ({ CRABBOX_PUBLIC_URL: healthUrl, CRABBOX_SHARED_TOKEN: secret, CRABBOX_STATIC_POOL: staticPool })
  // The test run's own CRABBOX_* variables (CRABBOX_E2E_PACKAGE, CRABBOX_TEST_NODES) would otherwise be more settings to deploy.
  const inherited = Object.fromEntries(Object.keys(process.env).flatMap((key) => (key.startsWith('CRABBOX_') ? [[key, undefined]] : [])))
  const env = (extra: Record<string, string> = {}) => ({
    ...inherited,
    CRABBOX_WRANGLER: wrangler.bin,
    CLOUDFLARE_API_TOKEN: 'cf-token',
    FAKE_WRANGLER_NEEDLE: secret,
    ...extra,
  })

  it('secrets on stdin, then the script, then health; prints the login line', async () => {
    const input = Object.entries(settings())
      .map(([key, value]) => `${key}='${value}'`)
      .join('\n')
    const result = await runCli(['broker', 'deploy', '--env-stdin', '--name', 'crabbox-prod', '--account-id', 'acc123'], {
      home,
      cwd: scratch,
      input,
      env: env(),
    })
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toContain(`deployed worker=crabbox-prod url=${healthUrl}`)
    expect(result.stdout).toContain(`users log in with: crabbox login --url ${healthUrl}`)
    expect(result.stdout + result.stderr).not.toContain(secret)
    expect(healthHits).toBeGreaterThan(0)

    const calls = wrangler.calls()
    expect(calls.map((call) => call.argv.slice(0, 2).join(' '))).toEqual(['secret bulk', 'deploy --name'])
    const [bulk, deploy] = calls
    expect(JSON.parse(bulk.stdin)).toEqual(settings())
    for (const call of calls) {
      expect(call.argv.join(' ')).not.toContain(secret)
      expect(call.needleOnDisk).toBe(false)
      expect(call.accountId).toBe('acc123')
      expect(call.argv).toContain('crabbox-prod')
    }
    // The packaged Worker, through a scratch copy of its wrangler.toml.
    const config = deploy.argv[deploy.argv.indexOf('--config') + 1]
    expect(config.startsWith(deploy.cwd)).toBe(true)
    expect(deploy.argv).not.toContain('--dry-run')
  })

  it('without a Cloudflare token or login it says how to get one and touches nothing (exit 3)', async () => {
    const result = await runCli(['broker', 'deploy', '--env-file', envFile(settings())], {
      home,
      cwd: scratch,
      env: env({ CLOUDFLARE_API_TOKEN: '', FAKE_WRANGLER_FAIL: 'whoami' }),
    })
    expect(result.code).toBe(3)
    expect(result.stderr).toContain('no Cloudflare login: set CLOUDFLARE_API_TOKEN or run `wrangler login`')
    expect(result.stderr).toContain('Nothing was deployed')
    expect(wrangler.calls().map((call) => call.argv[0])).toEqual(['whoami'])
  })

  it('a failing secrets step deploys nothing and says so', async () => {
    const result = await runCli(['broker', 'deploy', '--env-file', envFile(settings())], {
      home,
      cwd: scratch,
      env: env({ FAKE_WRANGLER_FAIL: 'secret' }),
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('setting the secrets failed (wrangler exit 1); nothing was deployed')
    expect(result.stderr).toContain('crabbox broker secrets list')
    expect(wrangler.calls().map((call) => call.argv[0])).toEqual(['secret'])
  })

  it('a failing script step says the secrets were set and how to undo', async () => {
    const result = await runCli(['broker', 'deploy', '--env-file', envFile(settings())], {
      home,
      cwd: scratch,
      env: env({ FAKE_WRANGLER_FAIL: 'deploy' }),
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('the secrets were set, the script was not deployed')
    expect(result.stderr).toContain('wrangler delete --name crabbox-coordinator')
    expect(healthHits).toBe(0)
  })

  it('broker secrets list, set (value from stdin) and unset', async () => {
    const list = await runCli(['broker', 'secrets', 'list', '--json'], { home, cwd: scratch, env: env() })
    expect(list.code, list.stderr).toBe(0)
    expect(JSON.parse(list.stdout)).toEqual({ name: 'crabbox-coordinator', secrets: ['CRABBOX_PUBLIC_URL', 'CRABBOX_SHARED_TOKEN'] })

    const set = await runCli(['broker', 'secrets', 'set', 'CRABBOX_ADMIN_TOKEN', '--name', 'crabbox-prod'], {
      home,
      cwd: scratch,
      input: `${secret}\n`,
      env: env(),
    })
    expect(set).toMatchObject({ code: 0, stdout: 'set CRABBOX_ADMIN_TOKEN on crabbox-prod\n' })
    const unset = await runCli(['broker', 'secrets', 'unset', 'CRABBOX_ADMIN_TOKEN'], { home, cwd: scratch, env: env() })
    expect(unset).toMatchObject({ code: 0, stdout: 'removed CRABBOX_ADMIN_TOKEN from crabbox-coordinator\n' })

    const calls = wrangler.calls()
    expect(calls.map((call) => call.argv.slice(0, 3).join(' '))).toEqual([
      'secret list --name',
      'secret put CRABBOX_ADMIN_TOKEN',
      'secret delete CRABBOX_ADMIN_TOKEN',
    ])
    expect(calls[1].stdin).toBe(secret)
    expect(calls.every((call) => !call.argv.join(' ').includes(secret) && !call.needleOnDisk)).toBe(true)
  })
})
