import { rmSync } from 'node:fs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { startFakeIslo, type FakeIslo } from '../support/fake-islo.js'
import { gitRepo, stdoutShows } from '../support/fixtures.js'

let fake: FakeIslo
const dirs: string[] = []
beforeAll(async () => {
  fake = await startFakeIslo()
})
afterEach(() => {
  fake.faults = {}
  fake.calls.length = 0
})
afterAll(async () => {
  await fake.close()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function setup(extra: Record<string, string | undefined> = {}) {
  const home: CliHome = cliHome()
  const repo = gitRepo('islo-repo-', { 'hello.txt': 'hello from the checkout\n', 'a.txt': 'a\n' })
  dirs.push(home.dir, repo)
  const env = {
    CRABBOX_NO_AGENT: '1',
    CRABBOX_PROVIDER: 'islo',
    CRABBOX_ISLO_BASE_URL: fake.url,
    CRABBOX_ISLO_API_KEY: fake.key,
    CRABBOX_ISLO_WORKDIR: 'proj',
    ...extra,
  }
  return { home, repo, env }
}

const names = () => [...fake.sandboxes.keys()]
const paths = (method: string) => fake.calls.filter((call) => call.method === method).map((call) => call.path)

describe('islo (against a fake Islo API)', () => {
  it('creates a sandbox, uploads the checkout, streams output, passes the exit code and deletes it', async () => {
    const { home, repo, env } = setup()
    const result = await runCli(['run', '--', 'sh', '-c', 'cat hello.txt a.txt; echo err >&2; exit 3'], { home, cwd: repo, env })
    expect(result.stdout).toBe('hello from the checkout\na\n')
    expect(result.stderr).toMatch(/^err$/m)
    expect(result.code).toBe(3)
    const id = /provider=islo id=(isb_crabbox-islo-repo-[a-z0-9]+-[0-9a-f]{6}) sync=archive/.exec(result.stderr)?.[1]
    expect(id, result.stderr).toBeDefined()
    const name = id!.slice(4)
    const create = fake.calls.find((call) => call.method === 'POST' && call.path === '/sandboxes')
    expect(create?.body).toEqual({ name, image: 'docker.io/library/ubuntu:24.04', vcpus: 2, memory_mb: 4096, disk_gb: 20 })
    expect(paths('PUT')).toEqual([`/sandboxes/${name}/archive?path=%2Fworkspace%2Fproj`])
    const exec = fake.calls.find((call) => call.path.endsWith('/exec/stream'))
    expect(exec?.body).toEqual({ command: ['sh', '-c', 'cat hello.txt a.txt; echo err >&2; exit 3'], workdir: '/workspace/proj' })
    expect(paths('DELETE')).toEqual([`/sandboxes/${name}`])
    expect(names()).toEqual([])
  })

  it('keeps a sandbox with --keep, lists it across pages, reuses it with --id and stops it', async () => {
    const { home, repo, env } = setup()
    const kept = await runCli(['run', '--keep', '--', 'true'], { home, cwd: repo, env })
    expect(kept.code, kept.stderr).toBe(0)
    const other = await runCli(['run', '--keep', '--', 'true'], { home, cwd: repo, env })
    expect(other.code, other.stderr).toBe(0)
    expect(names()).toHaveLength(2)
    fake.faults.pageSize = 1
    const list = await runCli(['list', '--json'], { home, cwd: repo, env })
    expect(list.code, list.stderr).toBe(0)
    const rows = JSON.parse(list.stdout) as { id: string; provider: string; state: string }[]
    expect(rows.map((row) => [row.id, row.provider, row.state]).sort()).toEqual(
      names()
        .map((n) => [`isb_${n}`, 'islo', 'active'])
        .sort(),
    )
    expect(paths('GET').filter((path) => path.startsWith('/sandboxes?'))).toEqual(['/sandboxes?limit=100', '/sandboxes?limit=100&cursor=1'])
    const [first] = names()
    const again = await runCli(['run', '--id', `isb_${first}`, '--', 'printf', '%s|', 'a b', "it's"], { home, cwd: repo, env })
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toBe("a b|it's|")
    expect(names()).toContain(first)
    for (const row of rows) expect((await runCli(['stop', row.id], { home, cwd: repo, env })).code).toBe(0)
    expect(names()).toEqual([])
    // Stopping again is fine; an isb_ ID Islo never knew is not found.
    const twice = await runCli(['stop', rows[0].id], { home, cwd: repo, env })
    expect(twice.code, twice.stderr).toBe(0)
    const unknown = await runCli(['stop', 'isb_crabbox-nope-000000'], { home, cwd: repo, env })
    expect(unknown.code).toBe(4)
    expect(unknown.stderr).toMatch(/no lease named isb_crabbox-nope-000000/)
  })

  it('Ctrl-C stops the remote command, exits 130 and deletes the sandbox', async () => {
    const { home, repo, env } = setup()
    const child = spawnCli(['run', '--', 'sh', '-c', 'echo started; exec sleep 300'], { home, cwd: repo, env })
    await stdoutShows(child, 'started')
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(code).toBe(130)
    expect(fake.calls.some((call) => call.path.endsWith('/signal') && (call.body as { signal: string }).signal === 'SIGINT')).toBe(true)
    expect(names()).toEqual([])
  })

  it('a stream that ends without an exit event is a failure, never exit 0', async () => {
    const { home, repo, env } = setup()
    fake.faults.noExitEvent = true
    const result = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/ended without an exit event/)
    expect(names()).toEqual([])
  })

  it('failures after the sandbox exists delete it; API errors carry the message and request ID', async () => {
    const { home, repo, env } = setup()
    fake.faults.uploadError = 'disk quota exceeded'
    const upload = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(upload.code).toBe(1)
    expect(upload.stderr).toMatch(/islo archive upload failed \(HTTP 500\): disk quota exceeded \(request req_\d+\)/)
    expect(paths('DELETE')).toHaveLength(1)
    expect(names()).toEqual([])
    fake.faults = { status: 'failed' }
    const boot = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(boot.code).toBe(5)
    expect(boot.stderr).toMatch(/islo sandbox crabbox-\S+ is failed/)
    expect(names()).toEqual([])
    fake.faults = { createError: 'image not allowed' }
    const create = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(create.code).toBe(1)
    expect(create.stderr).toMatch(/islo sandbox create failed \(HTTP 422\): image not allowed \(request req_\d+\)/)
  })

  it('refuses --sync-only and --checksum, and names the variable when the key is missing or wrong', async () => {
    const { home, repo, env } = setup()
    const syncOnly = await runCli(['run', '--sync-only'], { home, cwd: repo, env })
    expect(syncOnly.code).toBe(2)
    expect(syncOnly.stderr).toMatch(/--sync-only is not supported/)
    const checksum = await runCli(['run', '--checksum', '--', 'true'], { home, cwd: repo, env })
    expect(checksum.code).toBe(2)
    expect(checksum.stderr).toMatch(/--checksum is not supported/)
    const missing = await runCli(['run', '--', 'true'], {
      home,
      cwd: repo,
      env: { ...env, CRABBOX_ISLO_API_KEY: undefined, ISLO_API_KEY: undefined },
    })
    expect(missing.code).toBe(3)
    expect(missing.stderr).toMatch(/CRABBOX_ISLO_API_KEY/)
    const wrong = await runCli(['run', '--', 'true'], { home, cwd: repo, env: { ...env, CRABBOX_ISLO_API_KEY: 'nope' } })
    expect(wrong.code).toBe(3)
    expect(wrong.stderr).toMatch(/HTTP 401\): invalid API key/)
    expect(fake.calls.filter((call) => call.method === 'POST')).toEqual([])
  })

  it('warmup keeps a running sandbox without dialing it; ssh is refused with the run --id way in', async () => {
    const { home, repo, env } = setup()
    const warm = await runCli(['warmup', '--json'], { home, cwd: repo, env })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout) as { id: string; provider: string; state: string; keep: boolean }
    expect(lease).toMatchObject({ provider: 'islo', state: 'active', keep: true })
    expect(names().map((n) => `isb_${n}`)).toEqual([lease.id])
    expect(warm.stderr).not.toMatch(/waiting for SSH/)
    const ssh = await runCli(['ssh', '--id', lease.id, '--', 'true'], { home, cwd: repo, env })
    expect(ssh.code).toBe(2)
    expect(ssh.stderr).toContain(`crabbox run --id ${lease.id} -- <command>`)
    expect((await runCli(['stop', lease.id], { home, cwd: repo, env })).code).toBe(0)
    expect(names()).toEqual([])
  })

  it('doctor has a provider line for it', async () => {
    const { home, repo, env } = setup()
    const doctor = await runCli(['doctor', '--json'], { home, cwd: repo, env })
    const checks = JSON.parse(doctor.stdout).checks as { name: string; ok: boolean; detail?: string }[]
    const line = checks.find((check) => check.name === 'provider islo')
    expect(line?.ok, JSON.stringify(checks)).toBe(true)
    expect(line?.detail).toContain('CRABBOX_ISLO_API_KEY')
    const noKey = await runCli(['doctor', '--json'], {
      home,
      cwd: repo,
      env: { ...env, CRABBOX_ISLO_API_KEY: undefined, ISLO_API_KEY: undefined },
    })
    const failed = (JSON.parse(noKey.stdout).checks as { name: string; ok: boolean; fix?: string; detail?: string }[]).find(
      (check) => check.name === 'provider islo',
    )
    expect(failed?.ok).toBe(false)
    expect(JSON.stringify(failed)).toContain('CRABBOX_ISLO_API_KEY')
  })

  it('with --json the result owns stdout and the command output goes to stderr', async () => {
    const { home, repo, env } = setup()
    const result = await runCli(['run', '--json', '--', 'sh', '-c', 'echo out; exit 4'], { home, cwd: repo, env })
    expect(result.code).toBe(4)
    expect(result.stderr).toMatch(/^out$/m)
    expect(JSON.parse(result.stdout)).toMatchObject({ provider: 'islo', exitCode: 4 })
    expect(names()).toEqual([])
  })
})
