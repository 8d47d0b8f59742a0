import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { startBroker } from '../support/broker.js'
import { cliHome, runCli } from '../support/cli.js'

/**
 * The CLI-side low findings of the security review: `crabbox broker dev` state
 * readable by other local users, and `crabbox login` adopting whatever broker origin a
 * login's `redirect_uri` names.
 */

const cleanup: (() => unknown)[] = []
afterAll(async () => {
  for (const step of cleanup.reverse()) await step()
})

/** Every directory and file under `root` (root included). */
function walk(root: string): { path: string; mode: number; dir: boolean }[] {
  const found = [{ path: root, mode: statSync(root).mode & 0o777, dir: true }]
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const path = join(root, entry.name)
    if (entry.isDirectory()) found.push(...walk(path))
    else found.push({ path, mode: statSync(path).mode & 0o777, dir: false })
  }
  return found
}

function listen(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(handler)
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })),
  )
}

describe('low: broker dev state is private to the user', () => {
  it('creates the state folder 0700 and its files 0600, even where the folder is new', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'crabbox-sec-state-'))
    cleanup.push(() => rmSync(parent, { recursive: true, force: true }))
    const stateDir = join(parent, 'state')
    const broker = await startBroker({ stateDir, env: { CRABBOX_SHARED_TOKEN: 'perm-token' } })
    cleanup.push(() => broker.stop())
    // Something the object stores: a run record.
    const created = await fetch(`${broker.url}/v1/runs`, {
      method: 'POST',
      headers: { authorization: 'Bearer perm-token', 'x-crabbox-owner': 'perm@example.com', 'content-type': 'application/json' },
      body: JSON.stringify({ command: ['true'] }),
    })
    expect(created.status).toBe(201)
    const entries = walk(stateDir)
    expect(entries.filter((e) => !e.dir).length).toBeGreaterThan(0)
    const open = entries.filter((e) => (e.mode & 0o077) !== 0).map((e) => `${e.path} ${e.mode.toString(8)}`)
    expect(open).toEqual([])
  })
})

describe('low: login keeps to the broker the user named', () => {
  it('refuses a login whose redirect_uri names another origin, and never talks to it', async () => {
    const elsewhereHits: string[] = []
    const elsewhere = await listen((req, res) => {
      elsewhereHits.push(`${req.method} ${req.url}`)
      res.writeHead(404).end()
    })
    cleanup.push(() => new Promise((r) => elsewhere.server.close(r)))
    const broker = await listen((req, res) => {
      req.resume()
      if (req.method === 'POST' && req.url === '/v1/auth/github/start') {
        const authorize = new URL('https://github.test/login/oauth/authorize')
        authorize.searchParams.set('redirect_uri', `${elsewhere.url}/v1/auth/github/callback`)
        authorize.searchParams.set('state', 'state_x')
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(
          JSON.stringify({
            loginID: `login_${'0'.repeat(32)}`,
            url: authorize.href,
            expiresAt: new Date(Date.now() + 60_000).toISOString(),
          }),
        )
        return
      }
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ status: 'pending', expiresAt: new Date(Date.now() + 60_000).toISOString() }))
    })
    cleanup.push(() => new Promise((r) => broker.server.close(r)))
    const home = cliHome()
    cleanup.push(() => rmSync(home.dir, { recursive: true, force: true }))

    const result = await runCli(['login', '--url', broker.url, '--no-browser'], { home, timeoutMs: 60_000 })
    expect(result.code).toBe(3)
    expect(result.stderr).toContain(elsewhere.url)
    expect(result.stderr).toContain('--url')
    expect(elsewhereHits).toEqual([])
  })
})
