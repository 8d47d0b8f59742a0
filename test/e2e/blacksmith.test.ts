import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'

// The stand-in `blacksmith` executable: records its arguments, runs `testbox run` commands here.
const fakeBin = fileURLToPath(new URL('../support/fake-blacksmith', import.meta.url))
const WORKFLOW = '.github/workflows/testbox.yml'

const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function setup(extra: Record<string, string> = {}) {
  const home: CliHome = cliHome()
  const repo = gitRepo()
  const state = mkdtempSync(join(tmpdir(), 'fake-blacksmith-'))
  dirs.push(home.dir, repo, state)
  const env = {
    CRABBOX_NO_AGENT: '1',
    PATH: `${fakeBin}${delimiter}${process.env.PATH}`,
    FAKE_BLACKSMITH_DIR: state,
    CRABBOX_PROVIDER: 'blacksmith',
    CRABBOX_BLACKSMITH_WORKFLOW: WORKFLOW,
    CRABBOX_BLACKSMITH_ORG: 'openclaw',
    CRABBOX_BLACKSMITH_IDLE_TIMEOUT: '5401s',
    ...extra,
  }
  const calls = () =>
    readFileSync(join(state, 'args.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as string[])
  const boxes = () =>
    existsSync(join(state, 'boxes.json')) ? (JSON.parse(readFileSync(join(state, 'boxes.json'), 'utf8')) as { id: string }[]) : []
  return { home, repo, env, calls, boxes }
}

const keyOf = (home: CliHome, id: string) => join(home.env.XDG_CONFIG_HOME, 'crabbox', 'testboxes', id, 'id_ed25519')

describe('blacksmith-testbox (against a stand-in blacksmith CLI)', () => {
  it('warms up, runs with output and exit code passed through, and stops the testbox', async () => {
    const { home, repo, env, calls, boxes } = setup()
    const result = await runCli(['run', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3'], { home, cwd: repo, env })
    expect(result.stdout).toBe('out\n')
    expect(result.stderr).toMatch(/^err$/m)
    expect(result.stderr).toMatch(/provider=blacksmith-testbox id=tbx_\S+ sync=delegated/)
    expect(result.code).toBe(3)
    const [warmup, run, stop] = calls()
    expect(warmup.slice(0, 4)).toEqual(['--org', 'openclaw', 'testbox', 'warmup'])
    expect(warmup.slice(4, 5)).toEqual([WORKFLOW])
    expect(warmup[warmup.indexOf('--ssh-public-key') + 1]).toMatch(/^ssh-ed25519 /)
    expect(warmup.slice(-2)).toEqual(['--idle-timeout', '91'])
    const id = run[run.indexOf('--id') + 1]
    expect(id).toMatch(/^tbx_/)
    expect(run.slice(0, 6)).toEqual(['--org', 'openclaw', 'testbox', 'run', '--id', id])
    expect(run[run.indexOf('--ssh-private-key') + 1]).toBe(keyOf(home, id))
    expect(run.at(-1)).toBe("sh -c 'echo out; echo err >&2; exit 3'")
    expect(stop).toEqual(['--org', 'openclaw', 'testbox', 'stop', '--id', id])
    expect(boxes()).toEqual([])
    // The lease's key folder goes with the testbox.
    expect(existsSync(keyOf(home, id))).toBe(false)
  })

  it('keeps a testbox with --keep, lists it, reuses it with --id, and stops it by slug', async () => {
    const { home, repo, env, calls, boxes } = setup()
    const kept = await runCli(['run', '--keep', '--', 'true'], { home, cwd: repo, env })
    expect(kept.code, kept.stderr).toBe(0)
    const [{ id }] = boxes()
    expect(kept.stderr).toContain(`kept ${id}`)
    const list = await runCli(['list', '--json'], { home, cwd: repo, env })
    expect(list.code, list.stderr).toBe(0)
    const rows = JSON.parse(list.stdout) as { id: string; slug: string; provider: string; state: string }[]
    expect(rows.map((row) => [row.id, row.provider, row.state])).toEqual([[id, 'blacksmith-testbox', 'active']])
    const again = await runCli(['run', '--id', id, '--', 'printf', '%s|', 'a b', "it's"], { home, cwd: repo, env })
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toBe("a b|it's|")
    expect(calls().at(-1)).toEqual([
      '--org',
      'openclaw',
      'testbox',
      'run',
      '--id',
      id,
      '--ssh-private-key',
      keyOf(home, id),
      `printf '%s|' 'a b' 'it'\\''s'`,
    ])
    expect(boxes().map((box) => box.id)).toEqual([id])
    const stop = await runCli(['stop', rows[0].slug], { home, cwd: repo, env })
    expect(stop.code, stop.stderr).toBe(0)
    expect(boxes()).toEqual([])
    expect(calls().some((call) => call[0] === '--org' && call[3] === 'list')).toBe(true)
  })

  it('Ctrl-C stops the remote command, exits 130 and stops the testbox', async () => {
    const { home, repo, env, calls, boxes } = setup()
    const child = spawnCli(['run', '--', 'sh', '-c', 'echo started; exec sleep 300'], { home, cwd: repo, env })
    let stdout = ''
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    // Started, or ended without starting (then the assertion below shows why, instead of a timeout).
    await Promise.race([
      new Promise<void>((resolve) =>
        child.stdout!.on('data', (d) => {
          stdout += d
          if (stdout.includes('started')) resolve()
        }),
      ),
      closed,
    ])
    expect(stdout, stderr).toContain('started')
    child.kill('SIGINT')
    const code = await closed
    expect(code).toBe(130)
    const id = calls().find((call) => call[0] === 'interrupted')?.[1]
    expect(id).toMatch(/^tbx_/)
    expect(calls().at(-1)).toEqual(['--org', 'openclaw', 'testbox', 'stop', '--id', id])
    expect(boxes()).toEqual([])
  })

  it('a warmup that fails after starting a testbox stops it and reports the provider message', async () => {
    const { home, repo, env, calls, boxes } = setup({ FAKE_BLACKSMITH_WARMUP: 'fail-after-id' })
    const result = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(result.code).toBe(5)
    expect(result.stderr).toMatch(/blacksmith testbox warmup failed \(exit 1\): Error: runner never became ready \(request id req_456\)/)
    const [warmup, stop] = calls()
    expect(warmup[3]).toBe('warmup')
    expect(stop.slice(2, 4)).toEqual(['testbox', 'stop'])
    expect(boxes()).toEqual([])
    expect(calls().some((call) => call[3] === 'run')).toBe(false)
  })

  it('refuses --sync-only, needs a workflow, and names the login when the CLI is missing or logged out', async () => {
    const { home, repo, env } = setup()
    const syncOnly = await runCli(['run', '--sync-only'], { home, cwd: repo, env })
    expect(syncOnly.code).toBe(2)
    expect(syncOnly.stderr).toMatch(/--sync-only is not supported/)
    const noWorkflow = await runCli(['run', '--', 'true'], { home, cwd: repo, env: { ...env, CRABBOX_BLACKSMITH_WORKFLOW: undefined } })
    expect(noWorkflow.code).toBe(2)
    expect(noWorkflow.stderr).toMatch(/blacksmith\.workflow/)
    const unauth = await runCli(['run', '--', 'true'], { home, cwd: repo, env: { ...env, FAKE_BLACKSMITH_WARMUP: 'unauth' } })
    expect(unauth.code).toBe(3)
    expect(unauth.stderr).toMatch(/blacksmith auth login/)
    const missing = await runCli(['run', '--', 'true'], { home, cwd: repo, env: { ...env, PATH: '/nonexistent' } })
    expect(missing.code).toBe(3)
    expect(missing.stderr).toMatch(/blacksmith CLI was not found[\s\S]*blacksmith auth login/)
  })

  it('warmup leases a testbox without dialing it; ssh is refused with the run --id way in', async () => {
    const { home, repo, env, boxes } = setup()
    const warm = await runCli(['warmup', '--json'], { home, cwd: repo, env })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout) as { id: string; provider: string; state: string; keep: boolean }
    expect(lease).toMatchObject({ provider: 'blacksmith-testbox', state: 'active', keep: true })
    expect(boxes().map((box) => box.id)).toEqual([lease.id])
    expect(warm.stderr).not.toMatch(/waiting for SSH/)
    const ssh = await runCli(['ssh', '--id', lease.id, '--', 'true'], { home, cwd: repo, env })
    expect(ssh.code).toBe(2)
    expect(ssh.stderr).toContain(`crabbox run --id ${lease.id} -- <command>`)
    expect((await runCli(['stop', lease.id], { home, cwd: repo, env })).code).toBe(0)
    expect(boxes()).toEqual([])
  })

  it('doctor has a provider line for it', async () => {
    const { home, repo, env } = setup()
    const doctor = await runCli(['doctor', '--json'], { home, cwd: repo, env })
    const checks = JSON.parse(doctor.stdout).checks as { name: string; ok: boolean; detail?: string }[]
    const line = checks.find((check) => check.name === 'provider blacksmith-testbox')
    expect(line?.ok, JSON.stringify(checks)).toBe(true)
  })
})
