import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBroker, type BrokerHandle } from '../support/broker.js'
import { cliHome, runCli } from '../support/cli.js'
import { serveFake, type ServedFake } from '../support/fake-faults.js'
import { createFakeGithubComments } from '../support/fake-github-comments.js'

/**
 * `artifacts publish` with broker storage under `crabbox broker dev` (workerd's local R2):
 * the built CLI uploads through the broker's grants, the files come back byte for byte
 * from the read URLs, and the pull-request comment on a fake GitHub API is created once,
 * then updated. With --run the links are the run's portal links: its owner opens them,
 * another owner gets 404.
 */

const TOKEN = 'e2e-publish-token'
const OWNER = 'publisher@example.com'
const GH_TOKEN = 'ghp_e2epublish'
const REPO = 'acme/app'

let broker: BrokerHandle
let github: ReturnType<typeof createFakeGithubComments>
let served: ServedFake
let dir: string
const home = cliHome()

beforeAll(async () => {
  github = createFakeGithubComments({ token: GH_TOKEN, repos: [REPO] })
  served = await serveFake(github.handler)
  broker = await startBroker({ env: { CRABBOX_SHARED_TOKEN: TOKEN } })
  dir = mkdtempSync(join(tmpdir(), 'crabbox-e2e-publish-'))
  mkdirSync(join(dir, 'screens'))
  writeFileSync(join(dir, 'screens', 'after.png'), randomBytes(40_000))
  writeFileSync(join(dir, 'video.mp4'), randomBytes(3 * 1024 * 1024 + 17))
  writeFileSync(join(dir, 'empty.log'), '')
  writeFileSync(join(dir, 'metadata.json'), '{"files":[]}\n')
})
afterAll(async () => {
  await broker?.stop()
  await served?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
  rmSync(home.dir, { recursive: true, force: true })
})

const cliEnv = (extra: Record<string, string> = {}) => ({
  CRABBOX_COORDINATOR: broker.url,
  CRABBOX_COORDINATOR_TOKEN: TOKEN,
  CRABBOX_OWNER: OWNER,
  CRABBOX_ORG: 'e2e',
  GH_TOKEN,
  GITHUB_API_URL: served.url,
  ...extra,
})

async function publish(args: string[]) {
  const result = await runCli(['artifacts', 'publish', '--dir', dir, '--json', ...args], { home, env: cliEnv(), timeoutMs: 120_000 })
  expect(result.code, result.stderr).toBe(0)
  expect(result.stdout + result.stderr).not.toContain(GH_TOKEN)
  return JSON.parse(result.stdout)
}

describe('artifacts publish to the broker', () => {
  it('uploads to R2 under broker dev; the read URLs give the files back byte for byte; one comment, created then updated', async () => {
    const first = await publish(['--pr', '5', '--repo', REPO, '--prefix', 'pr-5/one'])
    expect(first).toMatchObject({ storage: 'broker', prefix: `crabbox-artifacts/${OWNER}/pr-5/one`, comment: { action: 'created' } })
    expect(first.files.map((f: { name: string }) => f.name)).toEqual(['empty.log', 'metadata.json', 'screens/after.png', 'video.mp4'])
    for (const file of first.files) {
      expect(file.url.startsWith(`${broker.url}/v1/artifacts/objects/`)).toBe(true)
      const response = await fetch(file.url)
      expect(response.status, file.name).toBe(200)
      expect(Buffer.from(await response.arrayBuffer()).equals(readFileSync(join(dir, file.name))), file.name).toBe(true)
    }
    expect(readFileSync(join(dir, 'published-artifacts.md'), 'utf8')).toContain(first.files[2].url)

    const second = await publish(['--pr', '5', '--repo', REPO, '--prefix', 'pr-5/two'])
    expect(second.comment).toMatchObject({ action: 'updated' })
    const comments = github.comments(REPO, 5)
    expect(comments).toHaveLength(1)
    expect(comments[0]!.body).toContain('pr-5/two/video.mp4')
  })

  it("with --run the links open only for who can see the run, and the run's page lists them", async () => {
    const headers = {
      authorization: `Bearer ${TOKEN}`,
      'x-crabbox-owner': OWNER,
      'x-crabbox-org': 'e2e',
      'content-type': 'application/json',
    }
    const created = await fetch(`${broker.url}/v1/runs`, { method: 'POST', headers, body: JSON.stringify({ command: ['npm', 'test'] }) })
    expect(created.status).toBe(201)
    const run = ((await created.json()) as { run: { id: string } }).run.id
    const result = await publish(['--run', run, '--no-comment', '--prefix', 'with-run'])
    expect(result.run).toBe(run)
    const png = result.files.find((f: { name: string }) => f.name === 'screens/after.png')
    expect(png.url).toBe(`${broker.url}/portal/runs/${run}/artifact?name=screens%2Fafter.png`)
    const mine = await fetch(png.url, { headers })
    expect(mine.status).toBe(200)
    expect(Buffer.from(await mine.arrayBuffer()).equals(readFileSync(join(dir, 'screens', 'after.png')))).toBe(true)
    const theirs = await fetch(png.url, { headers: { ...headers, 'x-crabbox-owner': 'other@example.com', 'x-crabbox-org': 'other' } })
    expect(theirs.status).toBe(404)
    const page = await (await fetch(`${broker.url}/portal/runs/${run}`, { headers })).text()
    expect(page).toContain('screens/after.png')
  })
})
