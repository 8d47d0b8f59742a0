import { rmSync } from 'node:fs'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { startFakeE2b, type FakeE2b } from '../support/fake-e2b.js'
import { gitRepo, stdoutShows } from '../support/fixtures.js'

let fake: FakeE2b
const dirs: string[] = []
beforeAll(async () => {
  fake = await startFakeE2b()
})
afterAll(async () => {
  await fake.close()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})
beforeEach(() => fake.faults.clear())

function setup() {
  const home: CliHome = cliHome()
  const repo = gitRepo('crabbox-e2b-', { 'hello.txt': 'hello from the checkout\n', 'it’s ünï.txt': 'unicode\n' })
  dirs.push(home.dir, repo)
  const env = {
    CRABBOX_NO_AGENT: '1',
    CRABBOX_PROVIDER: 'e2b',
    E2B_API_KEY: fake.apiKey,
    CRABBOX_E2B_API_URL: fake.url,
    CRABBOX_E2B_SANDBOX_URL: fake.url,
    CRABBOX_E2B_TEMPLATE: 'crabbox-base',
    CRABBOX_TTL: '45m',
  }
  return { home, repo, env }
}

describe('e2b (against a fake E2B API and envd)', () => {
  it('creates a sandbox, uploads the checkout, streams output, passes the exit code through and kills it', async () => {
    const { home, repo, env } = setup()
    const before = fake.created.length
    const result = await runCli(['run', '--', 'sh', '-c', 'cat hello.txt; cat "it’s ünï.txt" >&2; exit 3'], { home, cwd: repo, env })
    expect(result.stdout).toBe('hello from the checkout\n')
    expect(result.stderr).toMatch(/^unicode$/m)
    expect(result.stderr).toMatch(/provider=e2b id=\S+ sync=archive/)
    expect(result.code).toBe(3)
    const box = fake.created[before]
    expect(fake.created).toHaveLength(before + 1)
    expect(box.templateID).toBe('crabbox-base')
    expect(box.timeout).toBe(45 * 60)
    expect(box.metadata).toMatchObject({ crabbox: '1', crabbox_repo: repo.split('/').at(-1) })
    expect(box.metadata.crabbox_lease).toMatch(/\S/)
    expect(box.metadata.crabbox_slug).toMatch(/\S/)
    const runs = fake.started.filter((start) => start.sandboxID === box.sandboxID)
    expect(runs.map((run) => run.args.slice(0, 2))).toEqual([
      ['-l', '-c'],
      ['-l', '-c'],
    ])
    expect(runs[0].args[2]).toBe('tar -xzf .crabbox-upload.tar.gz && rm -f .crabbox-upload.tar.gz')
    expect(runs[1].args[2]).toBe(`sh -c 'cat hello.txt; cat "it’s ünï.txt" >&2; exit 3'`)
    expect(runs[1].cwd).toBe(`/home/user/crabbox/${repo.split('/').at(-1)}`)
    expect(fake.killed).toContain(box.sandboxID)
    expect(fake.sandboxes.has(box.sandboxID)).toBe(false)
  })

  it('keeps a sandbox with --keep, lists it by metadata, reuses it with --id and stops it', async () => {
    const { home, repo, env } = setup()
    const kept = await runCli(['run', '--keep', '--', 'true'], { home, cwd: repo, env })
    expect(kept.code, kept.stderr).toBe(0)
    const box = fake.created.at(-1)!
    const id = box.metadata.crabbox_lease
    expect(kept.stderr).toContain(`kept ${id}`)
    expect(fake.sandboxes.has(box.sandboxID)).toBe(true)
    const list = await runCli(['list', '--json'], { home, cwd: repo, env })
    expect(list.code, list.stderr).toBe(0)
    const rows = JSON.parse(list.stdout) as { id: string; provider: string; state: string }[]
    expect(rows.find((row) => row.id === id)).toMatchObject({ provider: 'e2b', state: 'active' })
    const again = await runCli(['run', '--id', id, '--', 'printf', '%s|', 'a b', "it's", '$HOME'], { home, cwd: repo, env })
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toBe("a b|it's|$HOME|")
    expect(fake.sandboxes.has(box.sandboxID)).toBe(true)
    const stop = await runCli(['stop', id], { home, cwd: repo, env })
    expect(stop.code, stop.stderr).toBe(0)
    expect(fake.sandboxes.has(box.sandboxID)).toBe(false)
  })

  it('Ctrl-C kills the remote command, exits 130 and kills the sandbox', async () => {
    const { home, repo, env } = setup()
    const child = spawnCli(['run', '--', 'sh', '-c', 'echo started; exec sleep 300'], { home, cwd: repo, env })
    await stdoutShows(child, 'started')
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(code).toBe(130)
    const box = fake.created.at(-1)!
    expect(fake.signals.at(-1)?.signal).toBe('SIGKILL')
    expect(fake.killed).toContain(box.sandboxID)
  })

  it('a failure after the sandbox exists kills it and reports E2B’s message', async () => {
    const { home, repo, env } = setup()
    fake.faults.add('upload')
    const before = fake.created.length
    const result = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/e2b run on \S+ failed: .*not enough disk space/)
    const box = fake.created[before]
    expect(box).toBeDefined()
    expect(fake.killed).toContain(box.sandboxID)
    expect(fake.sandboxes.has(box.sandboxID)).toBe(false)
  })

  it('a failed create reports the provider message; a missing or bad key is exit 3 naming E2B_API_KEY', async () => {
    const { home, repo, env } = setup()
    fake.faults.add('create')
    const create = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(create.code).toBe(5)
    expect(create.stderr).toMatch(/e2b sandbox create failed: .*no capacity in cluster \(request id req_e2b_1\)/)
    fake.faults.clear()
    const missing = await runCli(['run', '--', 'true'], { home, cwd: repo, env: { ...env, E2B_API_KEY: undefined } })
    expect(missing.code).toBe(3)
    expect(missing.stderr).toMatch(/E2B_API_KEY/)
    const bad = await runCli(['run', '--', 'true'], { home, cwd: repo, env: { ...env, E2B_API_KEY: 'e2b_wrong' } })
    expect(bad.code).toBe(3)
    expect(bad.stderr).toMatch(/Invalid API key/)
    const syncOnly = await runCli(['run', '--sync-only'], { home, cwd: repo, env })
    expect(syncOnly.code).toBe(2)
  })

  it('warmup creates a kept sandbox without dialing it; ssh is refused with the run --id way in', async () => {
    const { home, repo, env } = setup()
    const warm = await runCli(['warmup', '--json'], { home, cwd: repo, env })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout) as { id: string; provider: string; state: string; keep: boolean }
    expect(lease).toMatchObject({ provider: 'e2b', state: 'active', keep: true })
    const box = fake.created.at(-1)!
    expect(box.metadata.crabbox_lease).toBe(lease.id)
    expect(warm.stderr).not.toMatch(/waiting for SSH/)
    const ssh = await runCli(['ssh', '--id', lease.id, '--', 'true'], { home, cwd: repo, env })
    expect(ssh.code).toBe(2)
    expect(ssh.stderr).toContain(`crabbox run --id ${lease.id} -- <command>`)
    expect((await runCli(['stop', box.sandboxID], { home, cwd: repo, env })).code).toBe(0)
    expect(fake.sandboxes.has(box.sandboxID)).toBe(false)
  })

  it('doctor has a provider line for it', async () => {
    const { home, repo, env } = setup()
    const doctor = await runCli(['doctor', '--json'], { home, cwd: repo, env })
    const checks = JSON.parse(doctor.stdout).checks as { name: string; ok: boolean; detail?: string }[]
    expect(checks.find((check) => check.name === 'provider e2b')?.ok, JSON.stringify(checks)).toBe(true)
    const without = await runCli(['doctor', '--json'], { home, cwd: repo, env: { ...env, E2B_API_KEY: undefined } })
    const line = (JSON.parse(without.stdout).checks as { name: string; ok: boolean; detail?: string }[]).find(
      (c) => c.name === 'provider e2b',
    )
    expect(line?.ok).toBe(false)
    expect(JSON.stringify(line)).toMatch(/E2B_API_KEY/)
  })
})
