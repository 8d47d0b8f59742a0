import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { startFakeDaytona, type FakeDaytonaOptions } from '../support/fake-daytona.js'
import { gitRepo, stdoutShows } from '../support/fixtures.js'

const dirs: string[] = []
const fakes: { close(): Promise<void> }[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})
afterEach(async () => {
  for (const fake of fakes.splice(0)) await fake.close()
})

async function setup(options: FakeDaytonaOptions = {}) {
  const fake = await startFakeDaytona(options)
  fakes.push(fake)
  const home: CliHome = cliHome()
  const repo = gitRepo()
  writeFileSync(join(repo, 'hello.txt'), 'from the checkout\n')
  // The fake runs commands on this machine, so the sandbox work root is a temp folder here.
  const workRoot = mkdtempSync(join(tmpdir(), 'fake-daytona-root-'))
  dirs.push(home.dir, repo, workRoot)
  const env = {
    CRABBOX_NO_AGENT: '1',
    CRABBOX_PROVIDER: 'daytona',
    DAYTONA_API_KEY: fake.apiKey,
    DAYTONA_API_URL: fake.url,
    CRABBOX_DAYTONA_SNAPSHOT: 'crabbox-ubuntu',
    CRABBOX_DAYTONA_WORK_ROOT: workRoot,
    CRABBOX_IDLE_TIMEOUT: '20m',
  }
  return { fake, home, repo, env, workRoot }
}

describe('daytona (against a fake Daytona API and toolbox)', () => {
  it('creates a labelled sandbox, uploads the checkout, streams output, passes the exit code and deletes it', async () => {
    const { fake, home, repo, env } = await setup()
    const result = await runCli(['run', '--', 'sh', '-c', 'cat hello.txt; echo err >&2; exit 3'], { home, cwd: repo, env })
    expect(result.stderr).toMatch(/provider=daytona id=\S+ sync=archive/)
    expect(result.stdout).toBe('from the checkout\n')
    expect(result.stderr).toMatch(/^err$/m)
    expect(result.code).toBe(3)
    const create = fake.calls.find((call) => call.method === 'POST' && call.path === '/sandbox')?.body as Record<string, unknown>
    expect(create).toMatchObject({ snapshot: 'crabbox-ubuntu', autoStopInterval: 20 })
    expect(create.labels).toMatchObject({ crabbox: 'true', 'crabbox-keep': 'false' })
    expect(fake.calls.some((call) => /\/toolbox\/[^/]+\/files\/bulk-upload$/.test(call.path))).toBe(true)
    expect(fake.calls.some((call) => call.method === 'DELETE' && /^\/sandbox\//.test(call.path))).toBe(true)
    expect(fake.sandboxes()).toEqual([])
  })

  it('keeps a sandbox with --keep, lists it by label, reuses it with --id and stops it', async () => {
    const { fake, home, repo, env } = await setup()
    const kept = await runCli(['run', '--keep', '--', 'true'], { home, cwd: repo, env })
    expect(kept.code, kept.stderr).toBe(0)
    const [sandbox] = fake.sandboxes()
    const id = String(sandbox.id)
    expect(kept.stderr).toContain(`kept ${id}`)
    const list = await runCli(['list', '--json'], { home, cwd: repo, env })
    expect(list.code, list.stderr).toBe(0)
    const rows = JSON.parse(list.stdout) as { id: string; provider: string; state: string }[]
    expect(rows.map((row) => [row.id, row.provider, row.state])).toEqual([[id, 'daytona', 'active']])
    expect(fake.calls.some((call) => call.method === 'GET' && call.path.startsWith('/sandbox?') && call.path.includes('crabbox'))).toBe(
      true,
    )
    const again = await runCli(['run', '--id', id, '--', 'printf', '%s|', 'a b', "it's"], { home, cwd: repo, env })
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toBe("a b|it's|")
    expect(fake.sandboxes().map((box) => box.id)).toEqual([id])
    const stop = await runCli(['stop', id], { home, cwd: repo, env })
    expect(stop.code, stop.stderr).toBe(0)
    expect(fake.sandboxes()).toEqual([])
  })

  it('Ctrl-C stops the remote command, exits 130 and deletes the sandbox', async () => {
    const { fake, home, repo, env, workRoot } = await setup()
    const pidFile = join(workRoot, 'pid')
    const child = spawnCli(['run', '--', 'sh', '-c', `echo $$ > ${pidFile}; echo started; exec sleep 300`], { home, cwd: repo, env })
    await stdoutShows(child, 'started')
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(code).toBe(130)
    expect(fake.calls.some((call) => call.method === 'DELETE' && /\/process\/session\/crabbox-/.test(call.path))).toBe(true)
    expect(fake.sandboxes()).toEqual([])
    // The remote command itself is gone, not just the CLI.
    const pid = Number(readFileSync(pidFile, 'utf8'))
    await vi.waitFor(() => expect(() => process.kill(pid, 0)).toThrow(), { timeout: 5000 })
  })

  it('a sandbox that fails to start is deleted, and the error names what Daytona said', async () => {
    const { fake, home, repo, env } = await setup({ fault: 'start-error' })
    const result = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(result.code).toBe(5)
    expect(result.stderr).toMatch(/daytona sandbox create failed[^\n]*no runner capacity for snapshot/)
    expect(fake.calls.some((call) => call.method === 'DELETE' && /^\/sandbox\//.test(call.path))).toBe(true)
    expect(fake.sandboxes()).toEqual([])
  })

  it('a refused create reports the provider message, status and request ID', async () => {
    const { fake, home, repo, env } = await setup({ fault: 'create-error' })
    const result = await runCli(['run', '--', 'true'], { home, cwd: repo, env })
    expect(result.code).toBe(5)
    expect(result.stderr).toMatch(/daytona sandbox create failed \(HTTP 400\): Snapshot crabbox-ubuntu not found \(request id req_\w+\)/)
    expect(fake.sandboxes()).toEqual([])
  })

  it('missing or wrong credentials are exit 3 naming the variable; doctor has a provider line', async () => {
    const { home, repo, env } = await setup()
    const missing = await runCli(['run', '--', 'true'], { home, cwd: repo, env: { ...env, DAYTONA_API_KEY: undefined } })
    expect(missing.code).toBe(3)
    expect(missing.stderr).toMatch(/DAYTONA_API_KEY is not set/)
    const wrong = await runCli(['list'], { home, cwd: repo, env: { ...env, DAYTONA_API_KEY: 'nope' } })
    expect(wrong.code).toBe(3)
    expect(wrong.stderr).toMatch(/HTTP 401\): Invalid credentials/)
    const doctor = await runCli(['doctor', '--json'], { home, cwd: repo, env })
    const checks = JSON.parse(doctor.stdout).checks as { name: string; ok: boolean; detail?: string }[]
    const line = checks.find((check) => check.name === 'provider daytona')
    expect(line?.ok, JSON.stringify(checks)).toBe(true)
  })
})

describe('daytona over SSH (a fake SSH gateway that takes Daytona access tokens)', () => {
  const toolboxRun = (fake: Awaited<ReturnType<typeof setup>>['fake']) =>
    fake.calls.some((call) => /\/process\/session|\/files\/bulk-upload/.test(call.path))

  it('run unpacks and runs over SSH with a token as the user: output, exit code, token revoked', async () => {
    const { fake, home, repo, env } = await setup({ ssh: 'on' })
    const result = await runCli(['run', '--', 'sh', '-c', 'cat hello.txt; echo err >&2; exit 3'], {
      home,
      cwd: repo,
      env: { ...env, CRABBOX_DAYTONA_SSH_ACCESS_MINUTES: '7' },
    })
    expect(result.stdout).toBe('from the checkout\n')
    expect(result.stderr).toMatch(/^err$/m)
    expect(result.code, result.stderr).toBe(3)
    expect(result.stderr).not.toMatch(/toolbox API/)
    expect(fake.tokens).toHaveLength(1)
    expect(fake.tokens[0]).toMatchObject({ expiresInMinutes: 7, revoked: true })
    expect(fake.gateway!.logins).toEqual([fake.tokens[0].token])
    expect(fake.gateway!.commands[0]).toMatch(/^mkdir -p \S+ && tar -xzf - -C \S+$/)
    expect(fake.gateway!.commands[1]).toMatch(/^cd \S+ && sh -c 'cat hello.txt; echo err >&2; exit 3'$/)
    expect(toolboxRun(fake)).toBe(false)
    expect(fake.sandboxes()).toEqual([])
  })

  it('Ctrl-C over SSH stops the remote command, exits 130, revokes the token and deletes the sandbox', async () => {
    const { fake, home, repo, env, workRoot } = await setup({ ssh: 'on' })
    const pidFile = join(workRoot, 'pid')
    const child = spawnCli(['run', '--', 'sh', '-c', `echo $$ > ${pidFile}; echo started; exec sleep 300`], { home, cwd: repo, env })
    await stdoutShows(child, 'started')
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(code).toBe(130)
    const pid = Number(readFileSync(pidFile, 'utf8'))
    await vi.waitFor(() => expect(() => process.kill(pid, 0)).toThrow(), { timeout: 5000 })
    expect(fake.tokens.every((t) => t.revoked)).toBe(true)
    expect(toolboxRun(fake)).toBe(false)
    expect(fake.sandboxes()).toEqual([])
  })

  it('crabbox ssh --id <sandbox> runs the command over SSH, passes its exit code and revokes the token', async () => {
    const { fake, home, repo, env } = await setup({ ssh: 'on' })
    const kept = await runCli(['run', '--keep', '--', 'true'], { home, cwd: repo, env })
    expect(kept.code, kept.stderr).toBe(0)
    const id = String(fake.sandboxes()[0].id)
    const ssh = await runCli(['ssh', '--id', id, '--', 'echo', 'hi from ssh;', 'exit', '4'], { home, cwd: repo, env })
    expect(ssh.stdout).toBe('hi from ssh\n')
    expect(ssh.code, ssh.stderr).toBe(4)
    expect(fake.tokens).toHaveLength(2)
    expect(fake.tokens.every((t) => t.revoked)).toBe(true)
    expect(fake.gateway!.logins.at(-1)).toBe(fake.tokens[1].token)
    const stop = await runCli(['stop', id], { home, cwd: repo, env })
    expect(stop.code, stop.stderr).toBe(0)
    // Release revokes every token of the sandbox (no token named), then deletes it.
    expect(fake.calls.some((call) => call.method === 'DELETE' && call.path === `/sandbox/${id}/ssh-access`)).toBe(true)
    expect(fake.sandboxes()).toEqual([])
  })

  it('ssh --print leaves the token out (and revokes it) unless --show-secret', async () => {
    const { fake, home, repo, env } = await setup({ ssh: 'on' })
    const kept = await runCli(['run', '--keep', '--', 'true'], { home, cwd: repo, env })
    expect(kept.code, kept.stderr).toBe(0)
    const id = String(fake.sandboxes()[0].id)
    const hidden = await runCli(['ssh', '--id', id, '--print'], { home, cwd: repo, env })
    expect(hidden.code, hidden.stderr).toBe(0)
    const token = fake.tokens.at(-1)!
    expect(hidden.stdout).toContain("'<redacted-token>@")
    expect(hidden.stdout).not.toContain(token.token)
    expect(hidden.stderr).toContain('add --show-secret')
    expect(token.revoked).toBe(true)
    const shown = await runCli(['ssh', '--id', id, '--print', '--show-secret'], { home, cwd: repo, env })
    expect(shown.code, shown.stderr).toBe(0)
    const usable = fake.tokens.at(-1)!
    expect(shown.stdout).toContain(`${usable.token}@`)
    expect(usable.revoked).toBe(false)
    expect((await runCli(['stop', id], { home, cwd: repo, env })).code).toBe(0)
  })

  it('falls back to the toolbox when the gateway refuses the token (or Daytona gives none), revoking it', async () => {
    for (const ssh of ['reject', undefined] as const) {
      const { fake, home, repo, env } = await setup({ ssh })
      const result = await runCli(['run', '--', 'sh', '-c', 'cat hello.txt; exit 5'], { home, cwd: repo, env })
      expect(result.stdout).toBe('from the checkout\n')
      expect(result.code, result.stderr).toBe(5)
      expect(result.stderr).toMatch(/daytona: no SSH access to \S+ \([^\n]+\); running through the toolbox API/)
      expect(toolboxRun(fake)).toBe(true)
      expect(fake.tokens.every((t) => t.revoked)).toBe(true)
      expect(fake.tokens).toHaveLength(ssh ? 1 : 0)
      expect(fake.gateway?.commands ?? []).toEqual([])
      expect(fake.sandboxes()).toEqual([])
    }
  })
})
