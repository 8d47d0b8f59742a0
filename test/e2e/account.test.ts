import type { ChildProcess } from 'node:child_process'
import { readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, runCli, spawnCli } from '../support/cli.js'
import { createFakeGithub, type FakeGithub } from '../support/fake-github.js'
import { serveFake, type ServedFake } from '../support/fake-hetzner.js'
import { confirmFormRequest } from '../support/login-page.js'

// One broker under workerd with a shared token and GitHub login against a fake GitHub on loopback.
let broker: BrokerHandle
let github: FakeGithub
let served: ServedFake
const home = cliHome()
const identity = { CRABBOX_OWNER: 'dev@example.com', CRABBOX_ORG: 'acme' }
const userFile = join(home.env.XDG_CONFIG_HOME, 'crabbox', 'config.yaml')

beforeAll(async () => {
  github = createFakeGithub({
    users: [{ login: 'octo', emails: [{ email: 'octo@example.com', primary: true, verified: true }], orgs: { Acme: 'active' } }],
  })
  served = await serveFake(github.handler)
  broker = await startBroker({
    env: {
      CRABBOX_SHARED_TOKEN: 'shared-token',
      CRABBOX_SESSION_SECRET: 'session-secret-for-tests',
      CRABBOX_GITHUB_CLIENT_ID: github.clientId,
      CRABBOX_GITHUB_CLIENT_SECRET: github.clientSecret,
      CRABBOX_GITHUB_URL: served.url,
      CRABBOX_GITHUB_API_URL: served.url,
      CRABBOX_DEFAULT_ORG: 'acme',
    },
  })
})
afterAll(async () => {
  await broker?.stop()
  await served?.close()
  rmSync(home.dir, { recursive: true, force: true })
})

/** Reads login's stderr until it prints GitHub's authorize URL (what a user would open). */
function authorizeUrlFrom(child: ChildProcess, onText: (text: string) => string): Promise<string> {
  return new Promise((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      const match = /https?:\/\/\S+\/login\/oauth\/authorize\S+/.exec(onText(d))
      if (match) resolve(match[0])
    })
    child.once('exit', () => reject(new Error(`login exited early: ${onText('')}`)))
  })
}

describe('account commands against the broker', () => {
  it('whoami without a broker is exit 2 saying how to log in', async () => {
    const result = await runCli(['whoami'], { home })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('crabbox login')
  })

  it('login --token-stdin refuses a bad token and changes nothing, stores a good one, whoami shows it, logout forgets it', async () => {
    const bad = await runCli(['login', '--url', broker.url, '--token-stdin'], { home, input: 'wrong\n', env: identity })
    expect(bad.code).toBe(3)
    expect(bad.stderr).toContain('crabbox login')
    expect(() => statSync(userFile)).toThrow()

    const good = await runCli(['login', '--url', `${broker.url}/`, '--token-stdin'], { home, input: '  shared-token  \n', env: identity })
    expect(good.code, good.stderr).toBe(0)
    expect(good.stdout).toBe(`logged in broker=${broker.url} provider=- user=dev@example.com org=acme config=${userFile}\n`)
    expect(statSync(userFile).mode & 0o777).toBe(0o600)
    expect(readFileSync(userFile, 'utf8')).toContain('token: shared-token')

    const who = await runCli(['whoami'], { home, env: identity })
    expect(who).toMatchObject({ code: 0, stdout: `user=dev@example.com org=acme auth=bearer broker=${broker.url}\n` })
    const whoJson = JSON.parse((await runCli(['whoami', '--json'], { home, env: identity })).stdout)
    expect(whoJson).toMatchObject({ owner: 'dev@example.com', org: 'acme', auth: 'bearer', broker: broker.url })

    const out = await runCli(['logout'], { home })
    expect(out).toMatchObject({ code: 0, stdout: `logged out config=${userFile}\n` })
    expect(readFileSync(userFile, 'utf8')).toContain(`url: ${broker.url}`)
    expect(readFileSync(userFile, 'utf8')).not.toContain('shared-token')
    expect((await runCli(['logout'], { home })).stdout).toContain('no stored token to remove')

    const after = await runCli(['whoami'], { home, env: identity })
    expect(after.code).toBe(3)
    expect(after.stderr).toContain('crabbox login')
  })

  it('login with GitHub: prints the code and the URL, finishes once the browser confirms the code, stores a user token', async () => {
    github.approveAs('octo')
    // The URL comes from the configured broker now (previous test left broker.url behind).
    const child = spawnCli(['login', '--no-browser', '--provider', 'aws'], { home })
    child.stdin!.end()
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    const authorizeUrl = await authorizeUrlFrom(child, (text) => (stderr += text))
    const code = new Promise<number | null>((resolve) => child.once('exit', resolve))
    // The code was printed before the URL, for the user to type in the browser.
    const userCode = /Confirm the code ([A-Z0-9]{4}-[A-Z0-9]{4}) in your browser/.exec(stderr)?.[1]
    expect(userCode, stderr).toBeDefined()
    // Play the browser: GitHub approves and redirects to the broker's callback, which asks for the code.
    const page = await fetch(authorizeUrl)
    expect(page.status).toBe(200)
    const html = await page.text()
    expect(html).not.toContain('login complete')
    // Play the user: type the code from the terminal and submit the page's form.
    const confirmed = await fetch(confirmFormRequest(page.url, html, userCode!))
    expect(confirmed.status).toBe(200)
    expect(await confirmed.text()).toContain('login complete')

    expect(await code).toBe(0)
    expect(stdout).toMatch(new RegExp(`^logged in broker=${broker.url} provider=aws user=octo@example\\.com org=(acme|Acme) config=`))
    expect(readFileSync(userFile, 'utf8')).toMatch(/token: cbxu_/)
    const who = JSON.parse((await runCli(['whoami', '--json'], { home })).stdout)
    expect(who).toMatchObject({ owner: 'octo@example.com', auth: 'github', login: 'octo' })
    const show = JSON.parse((await runCli(['config', 'show', '--json'], { home })).stdout)
    expect(show.config).toMatchObject({ provider: 'aws', broker: { provider: 'aws', token: 'set' } })
  })

  it('a GitHub login the broker denies is exit 3 and keeps the stored token', async () => {
    const before = readFileSync(userFile, 'utf8')
    github.denyWith('access_denied')
    const child = spawnCli(['login', '--no-browser'], { home })
    child.stdin!.end()
    let stderr = ''
    const authorizeUrl = await authorizeUrlFrom(child, (text) => (stderr += text))
    const code = new Promise<number | null>((resolve) => child.once('exit', resolve))
    await fetch(authorizeUrl).then((response) => response.text())
    expect(await code).toBe(3)
    expect(stderr).toContain('GitHub login failed')
    expect(readFileSync(userFile, 'utf8')).toBe(before)
  })

  it('doctor checks broker health and the login', async () => {
    const result = await runCli(['doctor'], { home })
    expect(result.code, result.stdout + result.stderr).toBe(0)
    expect(result.stdout).toMatch(new RegExp(`^ok\\s+broker\\s+${broker.url} \\(crabbox-coordinator\\)`, 'm'))
    expect(result.stdout).toMatch(/^ok\s+broker login\s+user=octo@example\.com/m)
  })
})
